"""Workflow templates: named, parameterised workflows with an Input schema.

A template is a builder function `params -> workflow tree` registered under a name
with an attrs class for its params. Running it structures the params (file
defaults, then the schema's defaults, fill what is not given), builds the tree,
seeds the params into the new run's memory, and returns the run id: typed steps
then find what they need by field name.
"""

from __future__ import annotations

import importlib
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from sideline.core import schema
from sideline.core.errors import ConfigurationError, WorkflowError
from sideline.core.workflow import Step
from sideline.runtime.workflows import Workflow

if TYPE_CHECKING:
    from sideline.runtime.app import App

__all__ = ["Builder", "Template", "Templates"]

Builder = Callable[[Any], Step]
"""Takes the structured params (an Input instance) and returns a workflow tree."""


@attrs.frozen
class Template:
    """A registered template: its name, params schema, builder and file defaults."""

    name: str
    input: type[Any]
    builder: Builder
    defaults: Mapping[str, Any] = attrs.field(factory=dict)
    """Params defaults loaded from a TOML or YAML file (they beat the schema's defaults)."""
    ttl_s: int | None = None

    @property
    def description(self) -> str:
        """The first line of the builder's docstring."""
        return (self.builder.__doc__ or "").strip().split("\n", 1)[0]

    def params(self) -> dict[str, str]:
        """Each param's name and type, e.g. {"doc_id": "int", "lang": "str = 'en'"}."""
        shown: dict[str, str] = {}
        for field in attrs.fields(self.input):
            text = schema.type_name(field.type)
            default = self.defaults.get(field.name, field.default)
            if isinstance(default, attrs.Factory):  # type: ignore[arg-type]  # attrs' runtime class
                default = default.factory()
            if default is not attrs.NOTHING:
                text += f" = {default!r}"
            shown[field.name] = text
        return shown


class Templates:
    """The templates of one App: `app.templates`."""

    def __init__(self, app: App) -> None:
        self._app = app
        self._templates: dict[str, Template] = {}
        self._file_defaults: dict[str, dict[str, Any]] = {}

    def register(self, name: str, *, input: type[Any], ttl_s: int | None = None
                 ) -> Callable[[Builder], Builder]:
        """Register the decorated builder as template `name` with params schema `input`.

        Args:
            ttl_s: the runs' state TTL (default: the app's run_ttl_s).

        Raises:
            ConfigurationError: the name is taken, or `input` is not an attrs class.
        """
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"a template name must be a non-empty str, got {name!r}")
        params = schema.check_schema(input, f"template {name!r} input")

        def decorate(builder: Builder) -> Builder:
            existing = self._templates.get(name)
            if existing is not None and existing.builder is not builder:
                raise ConfigurationError(f"template {name!r} is already registered by "
                                         f"{existing.builder!r}")
            defaults = self._file_defaults.get(name, {})
            schema.structure_partial(defaults, params, f"template {name!r} defaults")
            self._templates[name] = Template(name, params, builder, defaults, ttl_s)
            return builder

        return decorate

    def get(self, name: str) -> Template:
        """The template registered as `name`.

        Raises:
            WorkflowError: no such template.
        """
        try:
            return self._templates[name]
        except KeyError:
            known = ", ".join(sorted(self._templates)) or "none"
            raise WorkflowError(f"unknown template {name!r} (registered: {known})") from None

    def list(self) -> list[Template]:
        """Every registered template, sorted by name."""
        return [self._templates[name] for name in sorted(self._templates)]

    def load_defaults(self, path: str | Path) -> None:
        """Load params defaults from a TOML (.toml) or YAML (.yaml/.yml) file.

        The file has one table per template name, e.g. in TOML:

            [enrich_and_index]
            lang = "en"

        Defaults for a template not registered yet are kept until it is. YAML needs
        PyYAML (`pip install sideline[yaml]`).

        Raises:
            ConfigurationError: the file cannot be read or parsed, or is not shaped so.
            SchemaError: a default does not fit its template's params schema.
        """
        loaded = _read_defaults(Path(path))
        for name, defaults in loaded.items():
            template = self._templates.get(name)
            if template is not None:
                schema.structure_partial(defaults, template.input,
                                         f"template {name!r} defaults")
                self._templates[name] = attrs.evolve(template,
                                                     defaults={**template.defaults, **defaults})
            self._file_defaults[name] = {**self._file_defaults.get(name, {}), **defaults}

    def run(self, name: str, params: Mapping[str, Any] | None = None) -> str:
        """Run template `name` with `params`; return the run id.

        Raises:
            WorkflowError: unknown template, or the builder returned no workflow.
            SchemaError: the params do not fit the template's Input schema.
        """
        template = self.get(name)
        structured = schema.structure({**template.defaults, **(params or {})}, template.input,
                                      f"template {name!r} params")
        tree = template.builder(structured)
        seed = schema.unstructure(structured, f"template {name!r} params")
        try:
            workflow = Workflow(tree, app=self._app, ttl_s=template.ttl_s, memory=seed)
        except WorkflowError as exc:
            raise WorkflowError(f"template {name!r} built an invalid workflow: {exc}") from exc
        return workflow.run()


def _read_defaults(path: Path) -> dict[str, dict[str, Any]]:
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml"):
        raise ConfigurationError(
            f"template defaults {path}: use a .toml, .yaml or .yml file, not {suffix!r}")
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read template defaults {path}: {exc}") from exc
    data: Any
    if suffix == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(f"template defaults {path} is not valid TOML: {exc}") from exc
    else:
        try:
            yaml: Any = importlib.import_module("yaml")
        except ImportError as exc:
            raise ConfigurationError(
                f"reading {path} needs PyYAML: pip install 'sideline[yaml]' (or use TOML)"
            ) from exc
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigurationError(f"template defaults {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, dict) for k, v in data.items()):
        raise ConfigurationError(
            f"template defaults {path} must map each template name to a table of params")
    return {name: dict(values) for name, values in data.items()}
