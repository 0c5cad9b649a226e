"""rankedit push DIR --repo-id OWNER/NAME"""

from __future__ import annotations

import click

from rankedit.cli.quiet import quiet_option, result, say


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


@click.command("push")
@click.argument("dir", type=click.Path(exists=True, file_okay=False))
@click.option("--repo-id", required=True, metavar="OWNER/NAME", help="Hub model repo to publish to; created if it does not exist.")
@click.option("--private", is_flag=True, help="Create the repo as private (no effect on a repo that already exists).")
@click.option("--revision", default=None, metavar="BRANCH", help="Branch to commit to (created from main if missing). Default: main.")
@click.option("--dry-run", is_flag=True, help="Write and print the card and the file list; upload nothing (no token needed).")
@click.option("--regenerate-card", is_flag=True, help="Rewrite DIR/README.md even if it was edited by hand.")
@click.option("--scores", type=click.Path(exists=True, dir_okay=False), default=None,
              help="scores.json of `rankedit score` or report.json of `rankedit run`: scores and gain retention for the "
                   "card. Default: DIR/rankedit_scores.json when present.")
@click.option("--analysis", type=click.Path(exists=True, dir_okay=False), default=None,
              help="summary.json of `rankedit analyze` for the card. Default: DIR/rankedit_analysis.json when present.")
@click.option("--label", default=None,
              help="Name of this checkpoint in the scores file, when its path or directory name does not identify it.")
@click.option("--base-model", default=None, metavar="OWNER/NAME",
              help="Hub id of the base, when the edit was made from a local copy of a Hub model: it becomes the "
                   "card's base_model (and a LoRA adapter's base_model_name_or_path). Required for a LoRA adapter "
                   "whose base has no known Hub id.")
@click.option("--license", "license_", default=None, metavar="ID",
              help="Licence of the card (a Hub licence id: apache-2.0, mit, llama3.1, other, ...). Default: the one "
                   "in the inputs' model cards; when none is found the card says the licence is unknown.")
@click.option("--commit-message", default=None, help="Summary of the commit (as `hf upload`). Default: \"Upload METHOD edit (rankedit VERSION)\".")
@click.option("--commit-description", default=None, help="Description of the commit (as `hf upload`).")
@click.option("--create-pr", is_flag=True, help="Open a pull request with the upload instead of committing to main (as `hf upload`).")
@click.option("--include", multiple=True, metavar="GLOB", help="Upload only the files matching GLOB (repeatable; as `hf upload`).")
@click.option("--exclude", multiple=True, metavar="GLOB", help="Do not upload the files matching GLOB (repeatable; as `hf upload`).")
@quiet_option()
@click.option("--large-folder", is_flag=True,
              help="Resumable upload in several commits (huggingface_hub's large-folder upload): if it is cut off, "
                   "run the same command again and it resumes. For checkpoints of many gigabytes.")
def push(dir, repo_id, private, revision, dry_run, regenerate_card, scores, analysis, label, base_model, license_,
         commit_message, commit_description, create_pr, include, exclude, quiet, large_folder):
    """Publish the edited checkpoint DIR to the Hugging Face Hub.

    DIR is what `rankedit edit` wrote: a checkpoint (or, with --as-lora, a PEFT
    adapter) plus rankedit_edit.json; or what `rankedit apply` rebuilt; or an
    artifact (delta.json: `rankedit compress`'s winner, a PEFT adapter or a
    rankedit delta). First the model card is written to
    DIR/README.md: the recipe in readable form, `base_model` (the base and the
    tuned model, where they have Hub ids, or --base-model), the licence of the
    source (or --license), the analysis summary and the lm-eval scores and gain
    retention (as model-index results) when given. Local inputs are named by
    their directory name, never by their path. A README.md you edited yourself is kept unless
    --regenerate-card, so run --dry-run, edit the card, then push.

    Then the repo is created if needed and DIR is uploaded in one commit (or,
    with --large-folder, in a resumable upload); the URL is printed (the pull
    request's with --create-pr). The token comes from HF_TOKEN or `hf auth login` and is
    never printed or written anywhere. HF_ENDPOINT selects another Hub.
    """
    from rankedit.publish import hub

    options = hub.UploadOptions(commit_message=commit_message, commit_description=commit_description,
                                create_pr=create_pr, include=tuple(include), exclude=tuple(exclude),
                                large_folder=large_folder)
    hub.check_repo_id(repo_id)
    hub.check_dir(dir)
    hub.check_options(options, revision)
    token = None if dry_run else hub.resolve_token()
    prepared = hub.prepare(dir, repo_id, regenerate_card=regenerate_card, scores=scores, analysis=analysis, label=label,
                           base_model=base_model, license=license_)
    if dry_run:
        files = hub.selected(prepared.files, options)
        total = sum(s for _, s in files)
        say(quiet, prepared.card_text, f"--- {prepared.dir}/README.md: {prepared.card_action}",
            f"--- {len(files)} files, {_size(total)}, would go to {hub.repo_url(hub.endpoint(), repo_id, revision)}:",
            *(f"{_size(size):>10}  {path}" for path, size in files))
        result(quiet, f"{prepared.dir}/README.md", "dry run: nothing uploaded")  # quiet: the card, all it wrote
        return
    say(quiet, f"{prepared.dir}/README.md: {prepared.card_action}", err=True)
    files = hub.selected(prepared.files, options)
    say(quiet, f"uploading {len(files)} files ({_size(sum(s for _, s in files))}) to {repo_id}", err=True)
    url = hub.upload(prepared, token=token, private=private, revision=revision, options=options)
    click.echo(url)
