"""docs/deploy-aks.md read as a script: its shell blocks in order, their commands as argument lists, and
the node pools its `az aks` commands make."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEPLOY_DOC = ROOT / "docs" / "deploy-aks.md"


def shell_blocks(path: Path = DEPLOY_DOC) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```", path.read_text(), re.M | re.S)


def _statements(text: str) -> str:
    """The text with comments dropped and each unquoted line end turned into `;`."""
    out, quote, index = [], "", 0
    while index < len(text):
        char = text[index]
        if quote:
            if char == quote:
                quote = ""
            elif char == "\\" and quote == '"':
                out.append(char)
                index += 1
                char = text[index]
        elif char in "'\"":
            quote = char
        elif char == "#" and (not out or out[-1][-1] in " \t\n;"):
            while index < len(text) and text[index] != "\n":
                index += 1
            continue
        elif char == "\n":
            char = " ; "
        out.append(char)
        index += 1
    return "".join(out)


def commands(block: str) -> list[list[str]]:
    """Each command of a block as its words (continuation lines joined; comments, heredoc bodies and
    one-line shell function definitions left out), split at line ends, `;`, `&&`, `||`, `|` and `&`."""
    text = re.sub(r"\\\n\s*", " ", block)
    text = re.sub(r"<<'(\w+)'\n.*?^\1$", "", text, flags=re.M | re.S)  # heredoc bodies
    text = re.sub(r"^\s*\w+\(\) \{.*\}\s*$", "", text, flags=re.M)  # one-line functions
    lexer = shlex.shlex(_statements(text), posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    lexer.commenters = ""
    found: list[list[str]] = []
    words: list[str] = []
    for word in lexer:
        if word in (";", "&&", "|", "&", "||", "{", "}"):
            if words:
                found.append(words)
            words = []
        else:
            words.append(word)
    if words:
        found.append(words)
    return found


def all_commands(path: Path = DEPLOY_DOC) -> list[list[str]]:
    return [command for block in shell_blocks(path) for command in commands(block)]


def flag(command: list[str], *names: str) -> list[str]:
    """The values after a flag (up to the next flag): `--labels a=b c=d` -> ["a=b", "c=d"]."""
    for index, word in enumerate(command):
        if word in names:
            values = []
            for value in command[index + 1:]:
                if value.startswith("-"):
                    break
                values.append(value)
            return values
    return []


def every(command: list[str], *names: str) -> list[str]:
    """The value of each occurrence of a one-value flag: `--set a=1 --set b=2` -> ["a=1", "b=2"]."""
    return [command[index + 1] for index, word in enumerate(command[:-1]) if word in names]


def has(command: list[str], *prefix: str) -> bool:
    return command[:len(prefix)] == list(prefix)


@dataclass
class NodePool:
    name: str
    vm_size: str
    max_pods: int | None
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[dict[str, str]] = field(default_factory=list)


def _taint(text: str) -> dict[str, str]:
    key_value, effect = text.rsplit(":", 1)
    key, _, value = key_value.partition("=")
    return {"key": key, "value": value, "effect": effect}


def node_pools(path: Path = DEPLOY_DOC) -> dict[str, NodePool]:
    """The node pools the docs' `az aks create` (its system pool) and `az aks nodepool add` make."""
    pools: dict[str, NodePool] = {}
    for command in all_commands(path):
        if has(command, "az", "aks", "create"):
            name = (flag(command, "--nodepool-name") or ["nodepool1"])[0]
            taints = flag(command, "--nodepool-taints")
            labels = flag(command, "--nodepool-labels")
        elif has(command, "az", "aks", "nodepool", "add"):
            name = flag(command, "-n", "--name")[0]
            taints = flag(command, "--node-taints")
            labels = flag(command, "--labels")
        else:
            continue
        max_pods = flag(command, "--max-pods")
        pools[name] = NodePool(name, flag(command, "--node-vm-size", "-s")[0],
                               int(max_pods[0]) if max_pods else None,
                               dict(label.split("=", 1) for label in labels),
                               [_taint(t) for taint in taints for t in taint.split(",")])
    return pools
