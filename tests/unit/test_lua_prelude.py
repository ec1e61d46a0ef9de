"""The Lua prelude is generated from core.run, and no script spells a status by hand."""

from __future__ import annotations

import re
from collections.abc import Iterator
from importlib import resources

import pytest

from sideline.adapters.redis._scripts import SCRIPT_NAMES, prelude
from sideline.core.batch import BatchEvent
from sideline.core.run import FINISHED_TTL_S, SETTLED, STOPPABLE, NodeStatus, RunStatus
from sideline.core.settlement import NodeEvent

LUA = resources.files("sideline.adapters.redis") / "lua"
LUA_FILES = sorted(p.name for p in LUA.iterdir() if p.name.endswith(".lua"))
STATUSES = {s.value for s in NodeStatus} | {s.value for s in RunStatus} | {
    e.value for e in NodeEvent} | {e.value for e in BatchEvent}
GENERATED = ("NODE", "RUN", "EVENT", "BATCH", "CALLBACK", "SETTLED", "STOPPABLE",
             "FINISHED_TTL_S", "RUN_TTL_HEADROOM")

# A status word may still be a key name built from the prefix P (the dead set,
# "P .. 'dead'", the "failed" counter) or a payload field written by stamp(): not a status.
_NOT_A_STATUS = re.compile(r"(\bP, |\bP \.\. |\bstamp\(\w+, )$")


def _literals(source: str) -> Iterator[tuple[str, str]]:
    """Each single- or double-quoted string of Lua `source`, with the code before it on its
    line; comments are skipped."""
    for line in source.splitlines():
        i, code = 0, ""
        while i < len(line):
            char = line[i]
            if line.startswith("--", i):
                break
            if char in "'\"":
                end = i + 1
                while line[end] != char:
                    end += 2 if line[end] == "\\" else 1
                yield code, line[i + 1:end]
                code += line[i:end + 1]
                i = end + 1
                continue
            code += char
            i += 1


def test_every_script_file_is_registered() -> None:
    assert sorted(f"{name}.lua" for name in SCRIPT_NAMES) == sorted(
        name for name in LUA_FILES if name != "_lib.lua")


def test_prelude_holds_every_status_and_set() -> None:
    text = prelude()
    for table, members in (("NODE", NodeStatus), ("RUN", RunStatus), ("EVENT", NodeEvent)):
        line = next(x for x in text.splitlines() if x.startswith(f"local {table} = "))
        for member in members:
            assert f"{member.name} = '{member.value}'" in line
    for name, statuses in (("SETTLED", SETTLED), ("STOPPABLE", STOPPABLE)):
        line = next(x for x in text.splitlines() if x.startswith(f"local {name} = "))
        assert set(re.findall(r"\['(\w+)'\] = true", line)) == {s.value for s in statuses}
    assert f"local FINISHED_TTL_S = {FINISHED_TTL_S}" in text


@pytest.mark.parametrize("name", LUA_FILES)
def test_no_script_spells_a_status(name: str) -> None:
    source = (LUA / name).read_text("utf-8")
    spelled = [(code.strip(), value) for code, value in _literals(source)
               if value in STATUSES and not _NOT_A_STATUS.search(code)]
    assert spelled == [], f"{name}: use NODE.*, RUN.*, EVENT.* from the generated prelude"


@pytest.mark.parametrize("name", LUA_FILES)
def test_no_script_redefines_a_generated_name(name: str) -> None:
    source = (LUA / name).read_text("utf-8")
    for generated in GENERATED:
        assert not re.search(rf"^\s*local\s+{generated}\b", source, re.MULTILINE), (
            f"{name} defines {generated}, which the prelude generates")


def test_the_lexer_sees_literals_and_skips_comments() -> None:
    found = list(_literals("if x == 'dead' then -- not 'running'\nset_add(P, 'dead', \"a\\\"b\")"))
    assert found == [("if x == ", "dead"), ("set_add(P, ", "dead"),
                     ("set_add(P, 'dead', ", 'a\\"b')]
