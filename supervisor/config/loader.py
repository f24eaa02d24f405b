"""Load host-supervisor.yaml and policies.d/*.yaml, reporting every error at FILE:LINE:COL.

Each file is composed into a PyYAML node tree (which keeps line and column marks),
constructed into plain data and validated by the models. Every pydantic error is
mapped back to the node at its key path and rewritten as a short human message.
Cross-file rules (one policy per unit, alert channels defined, apprise URLs usable)
run as a second stage over the files that passed the first.

Bad input never escapes as an exception: whatever goes wrong while loading one file
(even a bug of ours) becomes an error for that file, and the other files still load.
Only a config directory that is missing or cannot be looked at raises ConfigError.
The config directory, policies.d and every file must be root's and writable by root
alone (see `supervisor.config.trust`); a directory that is not is refused as a whole.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import yaml

from supervisor.config.cluster import tls_problems
from supervisor.config.documents import (
    ConfigIssue,
    Document,
    Loc,
    find_node,
    format_path,
    position,
    read_document,
)
from supervisor.config.http import http_tls_problems
from supervisor.config.main import MainConfig
from supervisor.config.policy import Policy
from supervisor.config.trust import path_refusal
from supervisor.config.validation import validate_document
from supervisor.errors import ConfigError
from supervisor.secrets import mask_url, remember
from supervisor.text import clip

__all__ = ["MAIN_FILE", "POLICY_DIR", "ConfigIssue", "LoadedConfig", "load_config", "mask_url"]

MAIN_FILE = "host-supervisor.yaml"
POLICY_DIR = "policies.d"
POLICY_SUFFIXES = (".yaml", ".yml")

T = TypeVar("T")


@dataclass(frozen=True)
class LoadedConfig:
    """The result of loading a config directory: what is valid, and every error."""

    main: MainConfig
    policies: dict[str, Policy]
    sources: dict[str, Path]
    errors: list[ConfigIssue] = field(default_factory=list)
    main_ok: bool = True

    @property
    def ok(self) -> bool:
        """True when no file had an error."""
        return not self.errors

    @property
    def only_refusals(self) -> bool:
        """True when there are errors and each is a refusal of an untrusted file or
        directory (owner or mode): nothing from them is used, but nothing is mistyped."""
        return bool(self.errors) and all(issue.refused for issue in self.errors)


def load_config(config_dir: Path) -> LoadedConfig:
    """Load `config_dir`; raise ConfigError only when the directory itself is unusable."""
    try:
        if not config_dir.exists():
            raise ConfigError(f"config directory {config_dir} does not exist")
        if not config_dir.is_dir():
            raise ConfigError(f"config directory {config_dir} is not a directory")
    except OSError as exc:
        raise ConfigError(f"config directory {config_dir}: {exc.strerror or exc}") from None

    issues: list[ConfigIssue] = []
    refusal = _directory_refusal(config_dir)
    if refusal is not None:
        return LoadedConfig(MainConfig(), {}, {}, [refusal], main_ok=False)
    failed: tuple[MainConfig | None, Document | None, bool] = (None, None, False)
    main, main_doc, main_ok = _guarded(config_dir / MAIN_FILE, issues, failed, _load_main)
    channels = set(main.alerts.channels) if main is not None else None
    if main is not None:
        apprise_issues = (
            _check_channels(main, main_doc)
            + _check_cluster_tls(main, main_doc)
            + _check_http_tls(main, main_doc)
        )
        issues.extend(apprise_issues)
        main_ok = main_ok and not apprise_issues
    if main is None or not main_ok:
        main = MainConfig()

    clustered = main.cluster is not None
    policies, sources = _load_policies(config_dir / POLICY_DIR, channels, issues, clustered)
    issues.sort(key=lambda issue: (str(issue.path), issue.line, issue.col))
    return LoadedConfig(main, policies, sources, issues, main_ok)


def load_policy_file(path: Path) -> tuple[Policy | None, list[ConfigIssue]]:
    """Load one policy file on its own (for `host-supervisor check FILE`); never raises."""
    issues: list[ConfigIssue] = []
    policy = _guarded(path, issues, None, lambda p, found: _load_one_policy(p, found))
    return policy, issues


def load_main_file(path: Path) -> list[ConfigIssue]:
    """The errors of one main config file judged on its own (for `validate --main FILE`);
    a file that does not exist is an error here, not the defaults. Never raises."""
    issues: list[ConfigIssue] = []

    def load(p: Path, found: list[ConfigIssue]) -> None:
        if not p.is_file():
            found.append(ConfigIssue(p, 1, 1, "no such file"))
            return
        main, doc, _ok = _load_main(p, found)
        if main is not None:
            found.extend(_check_channels(main, doc) + _check_cluster_tls(main, doc))
            found.extend(_check_http_tls(main, doc))

    _guarded(path, issues, None, load)
    return issues


def _load_one_policy(path: Path, issues: list[ConfigIssue]) -> Policy | None:
    doc = read_document(path, policy=True)
    issues.extend(doc.issues)
    if doc.issues:
        return None
    policy, errors = validate_document(Policy, doc)
    issues.extend(errors)
    return policy


def _guarded(
    path: Path,
    issues: list[ConfigIssue],
    failed: T,
    load: Callable[[Path, list[ConfigIssue]], T],
) -> T:
    """`load(path, issues)`, with any exception it raises made one error for `path`.

    Nothing in a file should make the loader raise; if something does anyway (a bug of
    ours), the file is refused with the exception named, and the other files still load.
    """
    found: list[ConfigIssue] = []
    try:
        result = load(path, found)
    except Exception as exc:
        found = [ConfigIssue(path, 1, 1, f"cannot be loaded: {_exception_text(exc)}")]
        result = failed
    issues.extend(found)
    return result


def _exception_text(exc: BaseException) -> str:
    try:
        text = clip(str(exc), 200)
    except Exception:  # str() of it can fail too (an int of over 4,300 digits)
        text = ""
    name = type(exc).__name__
    return f"{name}: {text} (an internal error; please report it)" if text else name


def _directory_refusal(directory: Path) -> ConfigIssue | None:
    """The error refusing a directory root may not trust (owner, mode), or None."""
    refusal = path_refusal(os.path.abspath(directory), directory=True)
    if refusal is None:
        return None
    return ConfigIssue(directory, 1, 1, f"refused: {refusal}; nothing in it is used", refused=True)


# --- files -------------------------------------------------------------------------------


def _load_policies(
    directory: Path, channels: set[str] | None, issues: list[ConfigIssue], clustered: bool
) -> tuple[dict[str, Policy], dict[str, Path]]:
    """The valid policies by unit and their files; every problem goes to `issues`."""
    policies: dict[str, Policy] = {}
    sources: dict[str, Path] = {}
    first_seen: dict[str, tuple[Path, yaml.Node | None]] = {}

    def load(path: Path, problems: list[ConfigIssue]) -> None:
        doc = _read_trusted(path, policy=True)
        problems.extend(doc.issues)
        if doc.issues:
            return
        unit = doc.data.get("unit")
        if isinstance(unit, str) and unit in first_seen:
            problems.append(_duplicate_unit(unit, doc, *first_seen[unit]))
        elif isinstance(unit, str):
            first_seen[unit] = (path, find_node(doc.node, ("unit",)))
        policy, errors = validate_document(Policy, doc)
        problems.extend(errors)
        if policy is not None and channels is not None:
            problems.extend(_undefined_channels(policy, doc, channels))
        if policy is not None and policy.cluster is not None and not clustered:
            line, col = position(find_node(doc.node, ("cluster",)))
            message = (
                f"a cluster: section needs etcd: add cluster: {{endpoints: [...]}} to {MAIN_FILE}"
            )
            problems.append(ConfigIssue(doc.path, line, col, message, "cluster"))
        if policy is not None and not problems:
            policies[policy.unit] = policy
            sources[policy.unit] = path

    for path in _policy_files(directory, issues):
        _guarded(path, issues, None, load)
    return policies, sources


def _policy_files(directory: Path, issues: list[ConfigIssue]) -> list[Path]:
    """The policy files to read; a directory root may not trust gives none, and one error."""
    try:
        if not directory.is_dir():
            return []
        refusal = _directory_refusal(directory)
        if refusal is not None:
            issues.append(refusal)
            return []
        return sorted(
            entry
            for entry in directory.iterdir()
            if entry.suffix in POLICY_SUFFIXES
            and not entry.name.startswith(".")
            and entry.is_file()
        )
    except OSError as exc:
        issues.append(ConfigIssue(directory, 1, 1, f"cannot list the directory: {exc.strerror}"))
        return []


def _read_trusted(path: Path, *, policy: bool) -> Document:
    """read_document, and for a symbolic link the same trust asked of what it leads to."""
    if path.is_symlink():
        refusal = path_refusal(os.path.abspath(path), name="the file it links to")
        if refusal is not None:
            return Document(
                path, issues=[ConfigIssue(path, 1, 1, f"refused: {refusal}", refused=True)]
            )
    return read_document(path, policy=policy)


def _load_main(
    path: Path, issues: list[ConfigIssue]
) -> tuple[MainConfig | None, Document | None, bool]:
    """The parsed main config (None if it failed), its document, and whether it is clean."""
    if not path.exists():
        return MainConfig(), None, True
    doc = _read_trusted(path, policy=False)
    issues.extend(doc.issues)
    if doc.issues:
        return None, doc, False
    main, errors = validate_document(MainConfig, doc)
    issues.extend(errors)
    return main, doc, main is not None


# --- cross-checks ------------------------------------------------------------------------


def _duplicate_unit(
    unit: str, doc: Document, first_path: Path, first_node: yaml.Node | None
) -> ConfigIssue:
    first_line, first_col = position(first_node)
    line, col = position(find_node(doc.node, ("unit",)))
    return ConfigIssue(
        doc.path,
        line,
        col,
        f"{unit} already has a policy in {first_path}:{first_line}:{first_col}; "
        "keep one policy per unit",
        "unit",
    )


def _undefined_channels(policy: Policy, doc: Document, channels: set[str]) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    for index, name in enumerate(policy.alerts):
        if name in channels:
            continue
        defined = ", ".join(sorted(channels)) if channels else "none"
        line, col = position(find_node(doc.node, ("alerts", index)))
        message = f"alert channel {name!r} is not defined in {MAIN_FILE} (defined: {defined})"
        issues.append(ConfigIssue(doc.path, line, col, message, f"alerts[{index}]"))
    return issues


def _check_channels(main: MainConfig, doc: Document | None) -> list[ConfigIssue]:
    """Ask apprise whether it can use each channel's URL; never show the URL's secrets."""
    if not main.alerts.channels or doc is None:
        return []
    issues: list[ConfigIssue] = []
    for name, channel in main.alerts.channels.items():
        remember(channel.url)
        try:
            if _apprise_accepts(channel.url):
                continue
        except Exception:  # apprise's own bug on a strange URL: the URL is not usable
            pass
        loc: Loc = ("alerts", "channels", name, "url")
        line, col = position(find_node(doc.node, loc))
        message = (
            f"apprise cannot use the URL {mask_url(channel.url)!r}; check the service name "
            "and its required parts (see the apprise wiki)"
        )
        issues.append(ConfigIssue(doc.path, line, col, message, format_path(loc)))
    return issues


def _check_cluster_tls(main: MainConfig, doc: Document | None) -> list[ConfigIssue]:
    """Each TLS file for etcd that cannot be used: one error naming the file."""
    if main.cluster is None or main.cluster.tls is None:
        return []
    return _placed(doc, ("cluster", "tls"), tls_problems(main.cluster.tls))


def _check_http_tls(main: MainConfig, doc: Document | None) -> list[ConfigIssue]:
    """The listener's certificate or key that cannot be used: one error naming the file."""
    if main.http.tls is None:
        return []
    return _placed(doc, ("http", "tls"), http_tls_problems(main.http.tls))


def _placed(
    doc: Document | None, section: Loc, problems: list[tuple[str, str]]
) -> list[ConfigIssue]:
    """Each (field, message) as an issue at that field of `section` in `doc`."""
    if doc is None:
        return []
    issues: list[ConfigIssue] = []
    for name, message in problems:
        loc: Loc = (*section, name)
        line, col = position(find_node(doc.node, loc))
        issues.append(ConfigIssue(doc.path, line, col, message, format_path(loc)))
    return issues


def _apprise_accepts(url: str) -> bool:
    apprise_log = logging.getLogger("apprise")
    was_disabled = apprise_log.disabled
    apprise_log.disabled = True  # its messages would show parts of the URL
    try:
        with warnings.catch_warnings():  # apprise 2.x plugins import the deprecated imghdr
            warnings.simplefilter("ignore", DeprecationWarning)
            import apprise  # slow to import; only needed when channels exist

            return bool(apprise.Apprise().add(url))
    finally:
        apprise_log.disabled = was_disabled
