"""The model card (README.md) of a published edit, built from plain dicts.

Pure: the manifest (`rankedit_edit.json`), an optional analysis summary
(`summary.json` of `rankedit analyze`) and an optional scores document
(`scores.json` of `rankedit score` or `report.json` of `rankedit run`) go in,
a `huggingface_hub.ModelCard` comes out. Everything that needs the disk (Hub
ids of local inputs, the source licence) is resolved by `rankedit.publish.hub` and
passed in.

The card ends with a seal, `<!-- rankedit-card sha256:... -->`, the hash of
everything above it. A README whose seal still matches was written by rankedit
and never touched, so it may be regenerated; one whose seal no longer matches
was edited by a person and is kept.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import PurePath

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from rankedit.analysis.metrics import view
from rankedit.core.errors import RankeditError
from rankedit.edits.registry import EDITS, describe

SEAL_RE = re.compile(r"\n?<!-- rankedit-card sha256:([0-9a-f]{64}) -->\n?\Z")

# Metrics of `rankedit analyze` worth a column in the per-kind table, in order.
ANALYSIS_KEYS = view("card")


# --------------------------------------------------------------------------- seal

def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def seal(text: str) -> str:
    """Append the rankedit seal (hash of ``text``) to a card text."""
    text = text if text.endswith("\n") else text + "\n"
    return f"{text}\n<!-- rankedit-card sha256:{_sha(text)} -->\n"


def is_untouched(text: str) -> bool:
    """True when ``text`` is a card rankedit wrote and nobody has edited since."""
    m = SEAL_RE.search(text)
    return m is not None and _sha(text[: m.start()]) == m.group(1)


def is_tool_template(text: str) -> bool:
    """True for README.md files other tools write by default (mergekit, PEFT).

    An edit built through mergekit, or saved by PEFT, may already hold such a
    card; it says nothing about the edit, so it is replaced, not kept.
    """
    front = text.split("---", 2)[1] if text.startswith("---") and text.count("---") >= 2 else ""
    mergekit = "[mergekit](https://github.com/" in text and "mergekit" in front
    peft = "library_name: peft" in text and "<!-- Provide a quick summary of what the model is/does. -->" in text
    return bool(mergekit or peft)


# --------------------------------------------------------------------------- text

def _fmt(x, digits: int = 4) -> str:
    if x is None:
        return "–"
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return str(x).replace("|", "\\|")  # a bare | would split the table cell
    if isinstance(x, int):
        return str(x)
    return f"{x:.{digits}g}"


def _table(header: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def local_name(path: str) -> str:
    """How a card names a local input: its directory's name, never the path (it means nothing on the Hub)."""
    return PurePath(str(path).rstrip("/")).name or "a local checkpoint"


def _input_line(role: str, inp: dict, hub_id: str | None) -> str:
    path = inp.get("path", "?")
    where = f"[`{hub_id}`](https://huggingface.co/{hub_id})" if hub_id else f"`{local_name(path)}` (a local checkpoint, not on the Hub)"
    step = f", step {inp['step']}" if inp.get("step") is not None else ""
    hashes = ", ".join(f"`{f}` {h[:12]}…" for f, h in sorted((inp.get("sha256") or {}).items()))
    return f"- **{role}**: {where}{step}" + (f"; sha256 {hashes}" if hashes else "")


def _method_line(method: str, params: dict) -> str:
    """What the method does (its record's card sentence) and, with these parameters, what it keeps."""
    edit = EDITS.get(method)
    if edit is None:
        return f"Method **`{method}`**: a rankedit edit."
    return f"Method **`{method}`**: {edit.card}. Here it keeps: {describe(method, params)}."


def _recipe(manifest: dict, ids: dict) -> str:
    method = manifest["method"]
    params = manifest.get("params") or {}
    inputs = manifest.get("inputs") or {}
    lines = ["## Recipe", "", _method_line(method, params), ""]
    if params:
        lines += [_table(["parameter", "value"], [[k, v if not isinstance(v, (list, dict)) else str(v)] for k, v in params.items()]), ""]
    lines.append("Inputs:")
    if inputs.get("base"):
        lines.append(_input_line("base", inputs["base"], ids.get("base")))
    for i, t in enumerate(inputs.get("tuned") or []):
        tid = (ids.get("tuned") or [None] * (i + 1))[i] if i < len(ids.get("tuned") or []) else None
        lines.append(_input_line("tuned" if len(inputs["tuned"]) == 1 else f"tuned[{i}]", t, tid))
    if inputs.get("other"):
        lines.append(_input_line("other", inputs["other"], ids.get("other")))
    s = manifest.get("summary") or {}
    mats = [m for m in manifest.get("matrices") or [] if isinstance(m, dict)]
    lines += ["", "What the edit kept:", ""]
    rows = [["matrices edited", s.get("n_matrices", len(mats))],
            ["update energy kept ‖dW_edit‖_F / ‖dW‖_F (all edited matrices)", s.get("energy_kept")]]
    if s.get("density") is not None:
        rows.append(["density of the kept update", s["density"]])
    ek = sorted(float(m["energy_kept"]) for m in mats if m.get("energy_kept") is not None)
    if ek:
        rows.append(["energy kept per matrix: min / median / max",
                     f"{_fmt(ek[0])} / {_fmt(ek[len(ek) // 2])} / {_fmt(ek[-1])}"])
    lines.append(_table(["", "value"], rows))
    versions = [f"rankedit {manifest.get('rankedit_version', '?')}"]
    if manifest.get("mergekit_version"):
        versions.append(f"mergekit {manifest['mergekit_version']}")
    record = manifest.get("record_file")
    if record:  # an artifact: its record has the recipe and the base's hashes, not the per-matrix facts
        lines += ["", f"The recipe, with the sha256 of the base's files and each edited tensor's layout, is in "
                  f"[`{record}`]({record})."]
    else:
        lines += ["", f"Built with {', '.join(versions)}. The full recipe, with the sha256 of every input file and the "
                  "energy kept per matrix, is in [`rankedit_edit.json`](rankedit_edit.json)."]
    return "\n".join(lines)


def _scores_text(sel: dict) -> str:
    tasks = sel["tasks"]
    has_ref = any(t["base"] is not None or t["tuned"] is not None for t in tasks)
    header = ["task", "metric", "this model", "± stderr", "n"] + (["base", "tuned"] if has_ref else [])
    rows = [[t["task"], t["metric"], t["value"], t["stderr"], t["n"]] + ([t["base"], t["tuned"]] if has_ref else [])
            for t in tasks]
    lines = ["## Scores", "", f"lm-eval scores of this checkpoint (`{sel['label']}` in the scores file):", "",
             _table(header, rows)]
    rep = [t for t in tasks if t["in_report"]]
    if rep:
        lines += ["", "Gain retention R = (s_edit − s_base) / (s_tuned − s_base), with a 95% paired-bootstrap interval "
                  "over the same problems. R is undefined (–) where the tuned model's gain is not significant; "
                  "forgetting is s_base − s_edit on a control task, the points lost there (positive = worse).", ""]
        rrows = [[t["task"], t["retention"],
                  f"[{_fmt(t['ci'][0])}, {_fmt(t['ci'][1])}]" if t["ci"] else "–", t["forgetting"]] for t in rep]
        lines.append(_table(["task", "gain retention", "95% interval", "forgetting"], rrows))
    elif any(t["base"] is not None and t["tuned"] is not None for t in tasks):
        lines += ["", "Gain retention R = (s_edit − s_base) / (s_tuned − s_base) is not shown: its paired-bootstrap "
                  "interval needs the per-problem samples of the base, the tuned model and this checkpoint. "
                  "`rankedit push --scores OUT/scores.json` computes it when `rankedit score` wrote them beside "
                  "scores.json (OUT/LABEL/samples_*.jsonl); `rankedit run` reports it."]
    return "\n".join(lines)


def _analysis_text(summary: dict) -> str:
    lines = ["## Geometry of the update base → tuned", "",
             "Measured by `rankedit analyze` on the update the edit was taken from (definitions in rankedit's docs/science.md).", ""]
    flat = {**{f"model {k}": v for k, v in (summary.get("model") or {}).items()},
            **{f"mean {k}": v for k, v in (summary.get("mean") or {}).items()}}
    rows = [[k, v] for k, v in flat.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if rows:
        lines.append(_table(["measure", "value"], rows))
    by_kind = summary.get("by_kind") or {}
    if isinstance(by_kind, dict) and by_kind:
        keys = [k for k in ANALYSIS_KEYS if any(isinstance(v, dict) and k in v for v in by_kind.values())]
        if keys:
            lines += ["", "Mean by kind of matrix:", "",
                      _table(["kind"] + keys, [[kind] + [(v or {}).get(k) for k in keys] for kind, v in by_kind.items()])]
    return "\n".join(lines)


def _usage(repo_id: str, base_id: str | None, lora: bool, delta: bool = False) -> str:
    if delta:
        base = base_id or "BASE_MODEL"
        code = (f"hf download {repo_id} --local-dir artifact\nhf download {base} --local-dir base\n"
                "rankedit apply artifact base -o edited")
        note = "" if base_id else "\n\nReplace BASE_MODEL with the base checkpoint the artifact was made from."
        return (f"## Use\n\nA rankedit delta: the edited matrices only, applied to the base it was made from "
                f"(its sha256 is checked) by `rankedit apply`, which writes an ordinary transformers checkpoint:"
                f"\n\n```sh\n{code}\n```{note}")
    if lora:
        base = base_id or "BASE_MODEL"
        code = (f"from transformers import AutoModelForCausalLM\nfrom peft import PeftModel\n\n"
                f"base = AutoModelForCausalLM.from_pretrained(\"{base}\")\nmodel = PeftModel.from_pretrained(base, \"{repo_id}\")")
        note = "" if base_id else "\n\nReplace BASE_MODEL with the base checkpoint named under Recipe."
        return f"## Use\n\nA PEFT LoRA adapter on the base model:\n\n```python\n{code}\n```{note}"
    code = (f"from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
            f"tokenizer = AutoTokenizer.from_pretrained(\"{repo_id}\")\nmodel = AutoModelForCausalLM.from_pretrained(\"{repo_id}\")")
    return f"## Use\n\nAn ordinary transformers checkpoint:\n\n```python\n{code}\n```"


# --------------------------------------------------------------------------- card

def build_card(manifest: dict, *, repo_id: str, base_id: str | None = None, tuned_ids: list[str | None] | None = None,
               license: str | None = None, analysis: dict | None = None, scores: dict | None = None,
               lora: bool = False) -> ModelCard:
    """The model card of an edited checkpoint.

    ``manifest`` is `rankedit_edit.json`; ``base_id``/``tuned_ids`` the Hub ids
    of its inputs where known (they become `base_model`); ``license`` the
    source's licence; ``analysis`` a `rankedit analyze` summary; ``scores`` the
    output of :func:`rankedit.publish.scores.select_scores`. ``lora`` makes it a PEFT adapter card.
    """
    if not isinstance(manifest, dict) or not manifest.get("method"):
        raise RankeditError("rankedit_edit.json has no 'method': not a rankedit edit manifest")
    method = str(manifest["method"])
    tuned_ids = list(tuned_ids or [])
    name = repo_id.split("/")[-1]
    delta = manifest.get("artifact_kind") == "rankedit-delta"  # an artifact that only `rankedit apply` reads

    if lora:
        base_model: str | list[str] | None = base_id
    else:
        hub = [i for i in [base_id, *tuned_ids] if i]
        base_model = list(dict.fromkeys(hub)) or None
        if isinstance(base_model, list) and len(base_model) == 1:
            base_model = base_model[0]

    evals = []
    for t in (scores or {}).get("tasks", []):
        common = dict(task_type="text-generation", task_name="Text Generation", dataset_type=t["task"],
                      dataset_name=t["task"])
        evals.append(EvalResult(metric_type=t["metric"], metric_name=t["metric"], metric_value=t["value"], **common))
        if t["retention"] is not None:
            evals.append(EvalResult(metric_type="gain_retention", metric_name="gain retention (edit−base)/(tuned−base)",
                                    metric_value=t["retention"], **common))

    tags = ["rankedit", "model-editing", method] + (["lora", "peft"] if lora else [])
    data = ModelCardData(base_model=base_model, library_name="peft" if lora else "rankedit" if delta else "transformers",
                         license=license,
                         tags=tags, pipeline_tag="text-generation", model_name=name if evals else None,
                         eval_results=evals or None)

    inputs = manifest.get("inputs") or {}
    tuned_paths = [t.get("path", "?") for t in inputs.get("tuned") or []]
    src = tuned_ids[0] if tuned_ids and tuned_ids[0] else (local_name(tuned_paths[0]) if tuned_paths else "the tuned model")
    base_path = (inputs.get("base") or {}).get("path")
    base_src = base_id or (local_name(base_path) if base_path else "the base model")
    kind = "A PEFT LoRA adapter holding" if lora else "A rankedit delta holding" if delta else "A checkpoint holding"
    intro = (f"# {name}\n\n{kind} a **`{method}`** edit of `{src}` relative to its base `{base_src}`, built with "
             "rankedit. Only 2-D attention and MLP matrices are edited; the recipe below says how.")
    parts = [intro, _recipe(manifest, {"base": base_id, "tuned": tuned_ids})]
    if scores and scores.get("tasks"):
        parts.append(_scores_text(scores))
    if analysis:
        parts.append(_analysis_text(analysis))
    parts.append(_usage(repo_id, base_id, lora, delta))
    if not license:
        parts.append("## License\n\nUnknown: no licence was found in the model cards of the inputs above, and none was "
                     "given (`rankedit push --license ID` sets one). This checkpoint derives from those inputs, and "
                     "their licences apply.")

    body = "\n\n".join(parts) + "\n"
    text = f"---\n{data.to_yaml()}\n---\n\n{body}"
    return ModelCard(seal(str(ModelCard(text))))
