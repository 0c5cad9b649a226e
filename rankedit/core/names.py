"""File names that more than one module writes or reads, spelled once.

rankedit's own outputs first, then the Hugging Face names it looks for. A
module that alone knows a file keeps its name to itself.
"""

# an edited checkpoint (rankedit edit) and what `run` puts beside it for `push`
EDIT_MANIFEST = "rankedit_edit.json"
EDIT_SCORES = "rankedit_scores.json"
EDIT_ANALYSIS = "rankedit_analysis.json"
MERGEKIT_RECIPE = "mergekit_config.yml"
# an artifact (rankedit compress's winner, rankedit apply's input): its record
ARTIFACT_RECORD = "delta.json"

# rankedit analyze
ANALYSIS_SUMMARY = "summary.json"
ANALYSIS_METRICS = "metrics.jsonl"

# rankedit score: lm-eval's results of one model, and the table of all
LM_EVAL_RESULTS = "results.json"
SCORES_JSON = "scores.json"
SCORES_MD = "scores.md"

# rankedit run
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"  # report.md with its figures embedded, for a browser
FIG_SCORES = "scores.png"
FIG_RETENTION = "retention.png"
FIG_FRONTIER = "frontier.png"
FIG_PASS_AT_K = "pass_at_k.png"
FIG_KL_FORGETTING = "kl_forgetting.png"
FIG_EARLY_STOP = "early_stop.png"  # weight error and retention against the window fraction f
FIG_MERGES = "merge_retention.png"  # each merge against each of its runs (rankedit.report.merges)

# the organism: its summary, and the marker written last in a complete phase
ORGANISM_SUMMARY = "organism.json"
ORGANISM_PHASE = "rankedit_phase.json"

# every output folder's record of what rankedit wrote (rankedit.files.inventory)
INVENTORY = ".rankedit-output.json"

# Hugging Face checkpoints and PEFT adapters
HF_CONFIG = "config.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"

# every writing command's --overwrite (``rankedit.files.outdir``)
OVERWRITE_HELP = ("Replace an earlier rankedit output of another command or method in OUT. Never deletes files "
                  "rankedit did not write: a folder holding any is refused, with or without this flag.")
