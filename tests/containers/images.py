"""The project's Dockerfiles and build context, read as a Docker engine reads them, without one.

dockerfile-parse does the parsing (line continuations, `ARG` substitution in `FROM`, `ENV`
forms); this module splits the result into stages and answers what the tests ask: the
command a container runs, its environment, and whether a path is in the build context.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from dockerfile_parse import DockerfileParser

from tests.conftest import PROJECT_ROOT

BIDDER_DOCKERFILE = PROJECT_ROOT / "Dockerfile"
MODEL_SERVER_DOCKERFILE = PROJECT_ROOT / "docker" / "model-server" / "Dockerfile"
DOCKERFILES = {"bidder": BIDDER_DOCKERFILE, "model-server": MODEL_SERVER_DOCKERFILE}


@dataclass(frozen=True)
class Stage:
    """One `FROM` and the instructions after it, as (INSTRUCTION, value) pairs."""

    base: str
    name: str | None
    instructions: tuple[tuple[str, str], ...]

    def values(self, instruction: str) -> list[str]:
        return [value for name, value in self.instructions if name == instruction]

    def last(self, instruction: str) -> str | None:
        values = self.values(instruction)
        return values[-1] if values else None


@dataclass(frozen=True)
class Image:
    """A Dockerfile: its stages and the final stage's environment."""

    path: Path
    stages: tuple[Stage, ...]
    env: dict[str, str]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def command(self) -> list[str]:
        """What `docker run IMAGE` runs: the exec-form ENTRYPOINT followed by the CMD."""
        entrypoint = self.final.last("ENTRYPOINT")
        cmd = self.final.last("CMD")
        return (exec_form(entrypoint) if entrypoint else []) + (exec_form(cmd) if cmd else [])

    def healthcheck(self) -> list[str]:
        """The HEALTHCHECK's command, which must be in exec form."""
        value = self.final.last("HEALTHCHECK")
        assert value is not None, f"{self.path.name}: no HEALTHCHECK in the final stage"
        _, separator, command = value.partition(" CMD ")
        assert separator, f"HEALTHCHECK without CMD: {value}"
        return exec_form(command)


@cache
def read_image(path: Path) -> Image:
    parser = DockerfileParser(str(path))
    # parent_images has the bases with ARG defaults substituted, one per FROM.
    bases = iter(parser.parent_images)
    stages: list[tuple[str, str | None, list[tuple[str, str]]]] = []
    for entry in parser.structure:
        instruction, value = entry["instruction"], entry["value"]
        if instruction == "FROM":
            words = value.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append((next(bases), name, []))
        elif instruction != "COMMENT" and stages:
            stages[-1][2].append((instruction, value))
    return Image(
        path,
        tuple(Stage(base, name, tuple(instructions)) for base, name, instructions in stages),
        dict(parser.envs),
    )


def exec_form(value: str) -> list[str]:
    """The JSON array of an exec-form instruction; fails on the shell form, under which
    `/bin/sh -c` would be PID 1 and swallow SIGTERM."""
    try:
        words = json.loads(value)
    except json.JSONDecodeError:
        words = None
    assert isinstance(words, list), f"not in exec form (a JSON array): {value}"
    assert all(isinstance(word, str) for word in words), value
    return words


def copy_sources(value: str) -> list[str]:
    """The sources of a COPY or ADD: every word but the flags and the destination."""
    words = [word for word in shlex.split(value) if not word.startswith("--")]
    return words[:-1]


def copies_from_stage(value: str) -> bool:
    return any(word.startswith("--from=") for word in shlex.split(value))


@cache
def _dockerignore() -> tuple[tuple[bool, re.Pattern[str]], ...]:
    patterns = []
    for line in (PROJECT_ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        excludes = not line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        patterns.append((excludes, _glob(pattern)))
    return tuple(patterns)


def _glob(pattern: str) -> re.Pattern[str]:
    """Docker's (Go filepath.Match plus `**`) glob as a regular expression."""
    regex, index = "", 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            regex, index = regex + "(?:.*/)?", index + 3
        elif pattern.startswith("**", index):
            regex, index = regex + ".*", index + 2
        elif pattern[index] == "*":
            regex, index = regex + "[^/]*", index + 1
        elif pattern[index] == "?":
            regex, index = regex + "[^/]", index + 1
        else:
            regex, index = regex + re.escape(pattern[index]), index + 1
    return re.compile(regex + r"\Z")


def in_build_context(relative: str) -> bool:
    """Whether `.dockerignore` lets this path (relative to the project root) into the build
    context: the last pattern matching the path or one of its parent directories decides."""
    parts = Path(relative).parts
    candidates = ["/".join(parts[: end + 1]) for end in range(len(parts))]
    excluded = False
    for excludes, pattern in _dockerignore():
        if any(pattern.match(candidate) for candidate in candidates):
            excluded = excludes
    return not excluded
