"""YAN checkpoints on the Hugging Face hub: :class:`YANHubMixin`, the persistence half of
:class:`yan.model.YAN`, built on ``huggingface_hub.PyTorchModelHubMixin``.

What the mixin brings is the hub: ``YAN.from_pretrained("org/name")`` downloads a repository
(``snapshot_download``: weights, config, tokenizer, checksums, EMA) into the hub cache and loads
it; ``model.push_to_hub("org/name", tokenizer=tok)`` and :func:`push_checkpoint` (a folder as it
is, e.g. a training run's output) upload one. What stays YAN's own is how a folder is written
and read (:mod:`yan.checkpoint`): one atomic write (a temporary sibling renamed into place),
safetensors without pickle, the ``checksums.json`` verification before the weights are used,
the package version in ``config.json``, and a generated model card (:mod:`yan.model_card`).

Example::

    model.save_pretrained("runs/yan-small", tokenizer=tok)   # folder + README.md
    model = YAN.from_pretrained("runs/yan-small")             # a folder ...
    model = YAN.from_pretrained("org/yan-small", weights="ema")  # ... or a hub repository
    push_checkpoint("runs/s2", "org/yan-small")               # a run's exported model files
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, TypeVar

import huggingface_hub
import torch
from huggingface_hub import CommitOperationAdd, HfApi, ModelCard, PyTorchModelHubMixin
from huggingface_hub.errors import (
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
)
from huggingface_hub.utils import validate_repo_id

from .checkpoint import (
    CARD_NAME,
    CHECKSUMS_NAME,
    CONFIG_NAME,
    EMA_NAME,
    WEIGHTS_NAME,
    file_sha256,
    load_config,
    read_checksums,
    read_pretrained,
    verify_checksums,
    write_checksums,
    write_pretrained,
)
from .model_card import model_card
from .precision import cast

WEIGHTS = {"raw": WEIGHTS_NAME, "ema": EMA_NAME}  # from_pretrained(weights=...): which file
# a training checkpoint's resume state: not part of a shared model
NOT_PUSHED = ("optimizer.pt", "trainer_state.json")
HUB_TAGS = ["yan", "non-autoregressive", "flow-matching", "mixture-of-experts"]
_HUB_ERRORS = (HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled)

M = TypeVar("M", bound="YANHubMixin")


def weights_file(weights: str) -> str:
    """The file name of ``weights`` (``"raw"`` or ``"ema"``)."""
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {tuple(WEIGHTS)}, got {weights!r}")
    return WEIGHTS[weights]


def _is_repo_id(name: str) -> bool:
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


class YANHubMixin(PyTorchModelHubMixin, library_name="yan", tags=HUB_TAGS):
    """``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` for :class:`yan.model.YAN`.

    The subclass provides ``config`` (a :class:`yan.config.YANConfig`), ``state_dict()``,
    ``param_counts()`` and ``from_state_dict(config, state, origin=, against=)``.
    """

    config: Any

    # ---- reading ----
    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls: type[M],
        pretrained_model_name_or_path: str | Path,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        *,
        verify: bool = True,
        weights: str = "raw",
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        force_download: bool = False,
        local_files_only: bool = False,
        token: str | bool | None = None,
    ) -> M:
        """Load a checkpoint folder, or a hub repository ``"org/name"``, in eval mode.

        A local folder is read where it is; anything else that is a valid repository id is
        downloaded with ``huggingface_hub.snapshot_download`` (``revision``, ``cache_dir``,
        ``force_download``, ``local_files_only``, ``token`` are its arguments) and then read
        the same way.

        Args:
            device: where the tensors are read to (``None``: the CPU).
            dtype: cast the weights for inference (``"bfloat16"``: see :mod:`yan.precision`);
                ``None`` keeps the stored float32.
            verify: first check the files against the folder's ``checksums.json`` when it
                has one (:func:`yan.checkpoint.read_pretrained`).
            weights: ``"raw"`` (``model.safetensors``, the trained weights) or ``"ema"``
                (``ema.safetensors``, their moving average, from ``yan train --ema-decay``).

        Raises:
            FileNotFoundError: the folder, ``config.json`` or the weights file is missing, or
                the name is neither a folder nor a reachable hub repository.
            ValueError: a file is damaged, or the weights do not match the config.
        """
        weights_file(weights)
        name = str(pretrained_model_name_or_path)
        local = Path(name).expanduser()
        if local.is_dir():
            # a missing or damaged config.json is named here, before the mixin parses it
            if verify:
                verify_checksums(local, names=(CONFIG_NAME,))
            load_config(local)
            name = str(local)
        elif not _is_repo_id(name):
            raise FileNotFoundError(f"checkpoint folder {name} does not exist")
        try:
            return super().from_pretrained(
                name,
                revision=revision,
                cache_dir=cache_dir,
                force_download=force_download,
                local_files_only=local_files_only,
                token=token,
                device=device,
                dtype=dtype,
                verify=verify,
                weights=weights,
            )
        except _HUB_ERRORS as err:
            if local.is_dir():
                raise
            raise FileNotFoundError(
                f"{name} is neither a checkpoint folder nor a model on the Hugging Face hub "
                f"that could be downloaded ({type(err).__name__}: {str(err).splitlines()[0]})"
            ) from err

    @classmethod
    def _from_pretrained(  # type: ignore[override]
        cls: type[M],
        *,
        model_id: str,
        config: Any = None,  # config.json as the mixin read it; the folder's is read verified
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        verify: bool = True,
        weights: str = "raw",
        **download: Any,  # snapshot_download's: revision, cache_dir, force_download, token, ...
    ) -> M:
        """The mixin's loading step: the folder (downloaded first for a repository id, with the
        mixin's download arguments as they are: older huggingface_hub versions add proxies and
        resume_download)."""
        folder = Path(model_id)
        if not folder.is_dir():
            folder = Path(huggingface_hub.snapshot_download(repo_id=model_id, **download))
        return cls.load_folder(folder, device, dtype, verify=verify, weights=weights)

    @classmethod
    def load_folder(
        cls: type[M],
        folder: Path,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        *,
        verify: bool = True,
        weights: str = "raw",
    ) -> M:
        """The model of a local checkpoint folder (no hub involved), in eval mode."""
        name = weights_file(weights)
        if weights == "ema" and not (folder / EMA_NAME).is_file() and folder.is_dir():
            raise FileNotFoundError(
                f"checkpoint folder {folder} has no EMA weights ({EMA_NAME}): the run was "
                "trained without --ema-decay; load the trained weights (weights='raw', "
                "yan generate --weights raw)"
            )
        stored = read_pretrained(folder, device=device, verify=verify, weights=name)
        model = cls.from_state_dict(  # type: ignore[attr-defined]
            stored.config,
            stored.state,
            origin=str(stored.weights_path),
            against=str(stored.config_path),
        ).eval()
        return model if dtype is None else cast(model, dtype)

    # ---- writing ----
    def generate_model_card(self, *args: Any, **kwargs: Any) -> ModelCard:
        """The model card (:func:`yan.model_card.model_card`); keywords ``folder`` (where to
        find ``run.json`` and evaluation tables) and ``repo_id``."""
        return model_card(
            self.config,
            self.param_counts(),  # type: ignore[attr-defined]
            kwargs.get("folder"),
            repo_id=kwargs.get("repo_id"),
            card_data=self._hub_mixin_info.model_card_data,
            has_ema=bool(kwargs.get("has_ema", False)),
        )

    def save_pretrained(  # type: ignore[override]
        self,
        save_directory: str | Path,
        tokenizer: Any = None,
        *,
        config: Any = None,
        repo_id: str | None = None,
        push_to_hub: bool = False,
        model_card_kwargs: dict[str, Any] | None = None,
        **push_to_hub_kwargs: Any,
    ) -> Path:
        """Write weights, ``config.json``, the tokenizer's files (when given) and the model card
        ``README.md`` to ``save_directory``, replacing it atomically; returns the folder.

        ``config`` is accepted for the mixin's callers and ignored: the model's own
        :class:`~yan.config.YANConfig` is what ``config.json`` holds. With ``push_to_hub``
        the folder is then pushed to ``repo_id`` (default: the folder's name).
        """
        folder = Path(save_directory)
        card = self.generate_model_card(folder=folder, **(model_card_kwargs or {}))
        files = {CARD_NAME: str(card)}
        write_pretrained(folder, self.state_dict(), self.config, tokenizer=tokenizer, files=files)  # type: ignore[attr-defined]
        if push_to_hub:
            push_checkpoint(folder, repo_id or folder.name, **push_to_hub_kwargs)
        return folder

    def push_to_hub(  # type: ignore[override]
        self,
        repo_id: str,
        *,
        tokenizer: Any = None,
        config: Any = None,
        commit_message: str = "Upload YAN checkpoint",
        private: bool | None = None,
        token: str | None = None,
        branch: str | None = None,
        create_pr: bool | None = None,
        model_card_kwargs: dict[str, Any] | None = None,
    ) -> str:
        """Save the model (with ``tokenizer``, so that the repository is self-contained) to a
        temporary folder with checksums and push it in one commit; returns the commit URL."""
        with tempfile.TemporaryDirectory() as tmp:
            folder = self.save_pretrained(
                Path(tmp) / "model",
                tokenizer=tokenizer,
                model_card_kwargs={"repo_id": repo_id, **(model_card_kwargs or {})},
            )
            write_checksums(folder)
            return push_checkpoint(
                folder,
                repo_id,
                commit_message=commit_message,
                private=private,
                token=token,
                branch=branch,
                create_pr=create_pr,
            )


def push_checkpoint(
    folder: str | Path,
    repo_id: str,
    *,
    commit_message: str = "Upload YAN checkpoint",
    private: bool | None = None,
    token: str | None = None,
    branch: str | None = None,
    create_pr: bool | None = None,
) -> str:
    """Push a checkpoint folder as it is (a ``save_pretrained`` folder, a training run's
    output, a ``checkpoints/step-N``) to the hub repository ``repo_id`` in one commit.

    The files are verified against ``checksums.json`` first (damaged weights are not
    published); the folder's top-level files go up except the resume state (optimiser,
    trainer state) and hidden files; the model card is generated again, so an evaluation
    table written since (``yan eval --out FOLDER``) is in it, and its checksum entry is
    updated. Creates the repository when needed; returns the commit URL.
    """
    from .model import YAN  # the parameter counts of the config, on the meta device

    folder = Path(folder)
    config = load_config(folder)  # names a missing or damaged config.json
    verify_checksums(folder)
    with torch.device("meta"):
        counts = YAN(config).param_counts()
    card = model_card(
        config,
        counts,
        folder,
        repo_id=repo_id,
        card_data=YAN._hub_mixin_info.model_card_data,
        has_ema=(folder / EMA_NAME).is_file(),
    )
    card_bytes = str(card).encode("utf-8")
    operations = [
        CommitOperationAdd(path_in_repo=p.name, path_or_fileobj=str(p))
        for p in sorted(folder.iterdir())
        if p.is_file()
        and not p.name.startswith(".")
        and p.name not in (*NOT_PUSHED, CARD_NAME, CHECKSUMS_NAME)
    ]
    operations.append(CommitOperationAdd(path_in_repo=CARD_NAME, path_or_fileobj=card_bytes))
    recorded = read_checksums(folder)
    if recorded is not None:
        pushed = {op.path_in_repo for op in operations}
        entries = {k: v for k, v in recorded.items() if k in pushed}
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / CARD_NAME).write_bytes(card_bytes)
            entries[CARD_NAME] = {
                "sha256": file_sha256(Path(tmp) / CARD_NAME),
                "bytes": len(card_bytes),
            }
            record = write_checksums(tmp, entries).read_bytes()
        operations.append(CommitOperationAdd(path_in_repo=CHECKSUMS_NAME, path_or_fileobj=record))
    api = HfApi(token=token)
    repo = api.create_repo(repo_id=repo_id, private=private, exist_ok=True)
    commit = api.create_commit(
        repo_id=getattr(repo, "repo_id", repo_id),
        repo_type="model",
        operations=operations,
        commit_message=commit_message,
        revision=branch,
        create_pr=create_pr,
    )
    return str(getattr(commit, "commit_url", commit))


def main(argv: list[str] | None = None) -> str:
    """``yan push --checkpoint DIR --repo org/name``: :func:`push_checkpoint`, printing the
    commit URL. The token is huggingface_hub's (``hf auth login`` or ``HF_TOKEN``)."""
    import argparse
    import sys

    from .cli import exit_with_error

    p = argparse.ArgumentParser(prog="yan push", description=main.__doc__.split(".")[0])
    p.add_argument("--checkpoint", required=True, type=Path, help="checkpoint or run folder")
    p.add_argument("--repo", required=True, help="hub repository id, e.g. org/yan-small")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument("--branch", help="push to this branch (default: main)")
    p.add_argument("--create-pr", action="store_true", help="open a pull request instead")
    p.add_argument("--message", default="Upload YAN checkpoint", help="commit message")
    ns = p.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        url = push_checkpoint(
            ns.checkpoint,
            ns.repo,
            commit_message=ns.message,
            private=ns.private or None,
            branch=ns.branch,
            create_pr=ns.create_pr or None,
        )
    except (ValueError, FileNotFoundError, HfHubHTTPError) as err:
        exit_with_error(p.prog, err)
    print(url)
    return url


__all__ = ["WEIGHTS", "YANHubMixin", "main", "push_checkpoint", "weights_file"]
