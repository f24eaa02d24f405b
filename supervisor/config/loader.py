"""Load host-supervisor.yaml and policies.d/*.yaml, reporting every error at FILE:LINE:COL.

Each file is composed into a PyYAML node tree (which keeps line and column marks),
constructed into plain data and validated by the models. Every pydantic error is
mapped back to the node at its key path and rewritten as a short human message.
Cross-file rules (one policy per unit, alert channels defined, apprise URLs usable)
run as a second stage over the files that passed the first.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from supervisor.config.documents import (
    ConfigIssue,
    Document,
    Loc,
    find_node,
    format_path,
    position,
    read_document,
)
from supervisor.config.main import MainConfig
from supervisor.config.policy import Policy
from supervisor.config.validation import validate_document
from supervisor.errors import ConfigError
from supervisor.secrets import mask_url, remember

__all__ = ["MAIN_FILE", "POLICY_DIR", "ConfigIssue", "LoadedConfig", "load_config", "mask_url"]

MAIN_FILE = "host-supervisor.yaml"
POLICY_DIR = "policies.d"
POLICY_SUFFIXES = (".yaml", ".yml")


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


def load_config(config_dir: Path) -> LoadedConfig:
    """Load `config_dir`; raise ConfigError only when the directory itself is unusable."""
    if not config_dir.exists():
        raise ConfigError(f"config directory {config_dir} does not exist")
    if not config_dir.is_dir():
        raise ConfigError(f"config directory {config_dir} is not a directory")

    issues: list[ConfigIssue] = []
    main, main_doc, main_ok = _load_main(config_dir / MAIN_FILE, issues)
    channels = set(main.alerts.channels) if main is not None else None
    if main is not None:
        apprise_issues = _check_channels(main, main_doc)
        issues.extend(apprise_issues)
        main_ok = main_ok and not apprise_issues
    if main is None or not main_ok:
        main = MainConfig()

    policies, sources = _load_policies(config_dir / POLICY_DIR, channels, issues)
    issues.sort(key=lambda issue: (str(issue.path), issue.line, issue.col))
    return LoadedConfig(main, policies, sources, issues, main_ok)


def load_policy_file(path: Path) -> tuple[Policy | None, list[ConfigIssue]]:
    """Load one policy file on its own (for `host-supervisor check FILE`)."""
    doc = read_document(path, policy=True)
    if doc.issues:
        return None, doc.issues
    return validate_document(Policy, doc)


# --- files -------------------------------------------------------------------------------


def _load_policies(
    directory: Path, channels: set[str] | None, issues: list[ConfigIssue]
) -> tuple[dict[str, Policy], dict[str, Path]]:
    """The valid policies by unit and their files; every problem goes to `issues`."""
    policies: dict[str, Policy] = {}
    sources: dict[str, Path] = {}
    first_seen: dict[str, tuple[Path, yaml.Node | None]] = {}
    for path in _policy_files(directory):
        doc = read_document(path, policy=True)
        issues.extend(doc.issues)
        if doc.issues:
            continue
        problems: list[ConfigIssue] = []
        unit = doc.data.get("unit")
        if isinstance(unit, str) and unit in first_seen:
            problems.append(_duplicate_unit(unit, doc, *first_seen[unit]))
        elif isinstance(unit, str):
            first_seen[unit] = (path, find_node(doc.node, ("unit",)))
        policy, errors = validate_document(Policy, doc)
        problems.extend(errors)
        if policy is not None and channels is not None:
            problems.extend(_undefined_channels(policy, doc, channels))
        issues.extend(problems)
        if policy is not None and not problems:
            policies[policy.unit] = policy
            sources[policy.unit] = path
    return policies, sources


def _policy_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(
        entry
        for entry in directory.iterdir()
        if entry.suffix in POLICY_SUFFIXES and not entry.name.startswith(".") and entry.is_file()
    )


def _load_main(
    path: Path, issues: list[ConfigIssue]
) -> tuple[MainConfig | None, Document | None, bool]:
    """The parsed main config (None if it failed), its document, and whether it is clean."""
    if not path.exists():
        return MainConfig(), None, True
    doc = read_document(path, policy=False)
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
        if _apprise_accepts(channel.url):
            continue
        loc: Loc = ("alerts", "channels", name, "url")
        line, col = position(find_node(doc.node, loc))
        message = (
            f"apprise cannot use the URL {mask_url(channel.url)!r}; check the service name "
            "and its required parts (see the apprise wiki)"
        )
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
