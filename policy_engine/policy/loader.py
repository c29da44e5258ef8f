"""Loading rule sets: strict schema, every error of a file at once, each with file:line:col,
what is allowed, and the nearest valid key for a typo. Pure apart from reading the file.

A rule set that fails to load raises ``RuleSetError`` with all its problems; nothing half
loaded is ever returned, so a broken edit can never replace the rule set in force.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from policy_engine.analysis.detections import NUDENET, NUDENET_EXPOSED, DetectorSpec
from policy_engine.analysis.scoring import XCLIP, Category
from policy_engine.errors import ConfigError
from policy_engine.hashing import text_sha256
from policy_engine.policy import model as m
from policy_engine.policy.choices import did_you_mean as _suggest
from policy_engine.policy.territory import DEFAULT_TERRITORIES
from policy_engine.policy.thresholds import parse_clock, parse_fraction, parse_seconds
from policy_engine.policy.yamlsafe import (
    Problem,
    YamlRejected,
    compose,
    key_text,
    read_text,
    scalar,
    where,
)

T = TypeVar("T")

TOP_KEYS = {
    "ruleset": "the rule set's name",
    "version": "a version number or text",
    "description": "what the rule set is for",
    "sampling": "how to sample frames: fps, mode, framing, interval",
    "schedule_levels": "ordered levels, least restrictive first",
    "territories": "per territory: timezone and a window per level",
    "near_miss_margin": "how close (fraction of a threshold) counts as a near miss",
    "review_on_disagreement": "review where CLIP and a detector's second opinion disagree",
    "categories": "prompt sets per category",
    "rules": "the rules",
    "tests": "test cases for `rules test`",
}
CATEGORY_KEYS = ("prompts", "null", "description", "detector", "model")
DETECTOR_KEYS = (
    "model",
    "classes",
    "min_confidence",
    "min_area",
    "hide",
    "model_classes",
    "second_opinion_for",
)
RULE_KEYS = ("id", "description", "reference", "when", "then")
OUTCOME_KEYS = ("schedule", "tag", "tags", "review", "warning")
COMBINATORS = ("all", "any", "not")
SAMPLING_KEYS = ("fps", "mode", "framing", "interval", "max_frames")
SAMPLING_MODES = ("fps", "all", "keyframes", "scenes")
FRAMINGS = ("letterbox", "tiles", "center", "squash")
TERRITORY_KEYS = ("timezone", "windows")
TEST_KEYS = ("name", "duration", "coverage", "expect", "near_miss_margin", "checks")
TEST_COVERAGE_KEYS = ("share", "seconds", "longest_run", "first_seen")
EXPECT_KEYS = ("schedule", "tags", "review", "fired", "near_misses", "warnings")
REVIEW_WORDS = {"required": True, "true": True, "yes": True, "no": False, "false": False}


class RuleSetError(ConfigError):
    """A rule file failed to load; ``problems`` lists every error found."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} in rule file"
        super().__init__(head + ":\n" + "\n".join(f"  {p}" for p in self.problems))


class _Parser:
    """Walks the node tree, collecting problems instead of stopping at the first."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.problems: list[Problem] = []

    # -- reporting ------------------------------------------------------------------------
    def error(self, node: Node | None, message: str) -> None:
        line, column = where(node) if node is not None else (None, None)
        self.problems.append(Problem(self.path, line, column, message))

    def guard(self, node: Node, parse: Callable[[Any], T], what: str) -> T | None:
        """Parse a scalar with ``parse``; a ValueError becomes a problem at the node."""
        if not isinstance(node, ScalarNode):
            self.error(node, f"{what} must be a single value, not a list or mapping")
            return None
        try:
            return parse(scalar(node))
        except ValueError as exc:
            self.error(node, f"{what}: {exc}")
            return None

    # -- shapes ---------------------------------------------------------------------------
    def mapping(
        self, node: Node, allowed: Iterable[str], what: str, required: Iterable[str] = ()
    ) -> dict[str, Node] | None:
        if not isinstance(node, MappingNode):
            self.error(node, f"{what} must be a mapping (key: value)")
            return None
        allowed = list(allowed)
        items: dict[str, Node] = {}
        for key, value in node.value:
            name = key_text(key)
            if name not in allowed:
                self.error(
                    key,
                    f"unknown key {name!r} in {what}{_suggest(name, allowed)};"
                    f" allowed: {', '.join(allowed)}",
                )
                continue
            items[name] = value
        for name in required:
            if name not in items:
                self.error(node, f"{what} needs {name!r}")
        return items

    def known(
        self,
        node: Node,
        word: str,
        allowed: Iterable[str],
        before: str,
        after: str = "",
        listing: str = "",
    ) -> bool:
        """Whether ``word`` is one of ``allowed``; if not, an error naming the nearest one:
        ``{before}'word'{after} (did you mean ...?); {listing}``."""
        allowed = list(allowed)
        if word in allowed:
            return True
        tail = f"; {listing}" if listing else ""
        self.error(node, f"{before}{word!r}{after}{_suggest(word, allowed)}{tail}")
        return False

    def sequence(self, node: Node, what: str) -> list[Node] | None:
        if not isinstance(node, SequenceNode):
            self.error(node, f"{what} must be a list")
            return None
        return list(node.value)

    def text(self, node: Node | None, what: str, *, required: bool = False) -> str:
        if node is None:
            return ""
        value = self.guard(node, lambda v: v, what)
        if value is None or isinstance(value, (list, dict)):
            if required:
                self.error(node, f"{what} must not be empty")
            return ""
        text = str(value).strip()
        if required and not text:
            self.error(node, f"{what} must not be empty")
        return text

    def flag(self, node: Node, what: str) -> bool:
        value = self.guard(node, lambda v: v, what)
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in REVIEW_WORDS:
            return REVIEW_WORDS[value.lower()]
        if value is not None:
            self.error(node, f"{what} must be true/false (or 'required'), got {value!r}")
        return False

    # -- sections -------------------------------------------------------------------------
    def ruleset(self, root: Node | None, text: str) -> m.RuleSet | None:
        if root is None:
            self.error(
                None, "the file is empty; a rule set needs 'ruleset', 'categories' and 'rules'"
            )
            return None
        top = self.mapping(
            root, TOP_KEYS, "the rule set", required=("ruleset", "categories", "rules")
        )
        if top is None:
            return None
        name = self.text(top.get("ruleset"), "ruleset", required="ruleset" in top)
        levels = self.levels(top.get("schedule_levels"))
        categories, detectors, windows = (
            self.categories(top["categories"]) if "categories" in top else ((), (), ())
        )
        # Names as declared, valid or not: one broken category is one error, not one more
        # for every rule that names it.
        category_names = {c.name for c in (*categories, *detectors, *windows)} | (
            _declared_names(top.get("categories"))
        )
        rules = self.rules(top["rules"], category_names, levels) if "rules" in top else ()
        territories = self.territories(top.get("territories"), levels)
        margin = 0.25
        if "near_miss_margin" in top:
            margin = (
                self.guard(top["near_miss_margin"], parse_fraction, "near_miss_margin") or margin
            )
        # Likewise rule ids as written: a test naming a rule that is broken is not told
        # "no rule X (did you mean X?)" on top of the rule's own error.
        rule_ids = {r.id for r in rules} | _declared_rule_ids(top.get("rules"))
        tests = self.tests(top.get("tests"), category_names, levels, rule_ids)
        return m.RuleSet(
            name=name,
            version=self.text(top.get("version"), "version"),
            description=self.text(top.get("description"), "description"),
            categories=categories,
            detectors=detectors,
            xclip=windows,
            rules=rules,
            levels=levels,
            territories=territories,
            sampling=self.sampling(top.get("sampling")),
            near_miss_margin=margin,
            review_on_disagreement=self.review_on_disagreement(top, detectors),
            tests=tests,
            path=self.path,
            text=text,
            sha256=text_sha256(text),
        )

    def levels(self, node: Node | None) -> tuple[str, ...]:
        if node is None:
            return m.DEFAULT_LEVELS
        items = self.sequence(node, "schedule_levels") or []
        levels = [self.text(item, "a schedule level", required=True) for item in items]
        if len(levels) < 2:
            self.error(node, "schedule_levels needs at least two levels, least restrictive first")
            return m.DEFAULT_LEVELS
        duplicates = sorted({lv for lv in levels if levels.count(lv) > 1})
        if duplicates:
            self.error(node, f"schedule level(s) listed twice: {', '.join(duplicates)}")
        return tuple(levels)

    def sampling(self, node: Node | None) -> dict[str, Any]:
        if node is None:
            return {}
        items = self.mapping(node, SAMPLING_KEYS, "sampling") or {}
        result: dict[str, Any] = {}
        for key, value in items.items():
            if key in ("fps", "interval"):
                number = self.guard(value, _positive_number, f"sampling.{key}")
                if number is not None:
                    result[key] = number
            elif key == "max_frames":
                count = self.guard(value, _positive_int, "sampling.max_frames")
                if count is not None:
                    result[key] = count
            else:
                choices = SAMPLING_MODES if key == "mode" else FRAMINGS
                word = self.text(value, f"sampling.{key}")
                if self.known(
                    value,
                    word,
                    choices,
                    f"sampling.{key} ",
                    listing=f"allowed: {', '.join(choices)}",
                ):
                    result[key] = word
        return result

    def categories(
        self, node: Node
    ) -> tuple[tuple[Category, ...], tuple[Category, ...], tuple[Category, ...]]:
        """(CLIP's categories, the detectors' categories, X-CLIP's categories)."""
        if not isinstance(node, MappingNode) or not node.value:
            self.error(node, "categories must be a mapping of category name to its prompts")
            return (), (), ()
        categories: list[Category] = []
        detectors: list[Category] = []
        windows: list[Category] = []
        for key, body in node.value:
            name = key_text(key)
            if not name.strip():
                self.error(key, "a category needs a name")
                continue
            items = self.mapping(body, CATEGORY_KEYS, f"category {name!r}")
            if items is None:
                continue
            if ("prompts" in items) == ("detector" in items):
                self.error(
                    body,
                    f"category {name!r} needs 'prompts' (measured by CLIP) or 'detector'"
                    " (measured by an object detector), not both",
                )
                continue
            if "detector" in items:
                if "null" in items:
                    self.error(items["null"], f"category {name!r}: a detector category is not null")
                if "model" in items:
                    self.error(
                        items["model"],
                        f"category {name!r}: a detector category names its model inside"
                        " 'detector:'; 'model: xclip' is for categories with prompts",
                    )
                spec = self.detector(items["detector"], name)
                if spec is not None:
                    detectors.append(Category(name, (), detector=spec))
                continue
            prompts = self.prompts(items["prompts"], name)
            null = (
                self.flag(items["null"], f"category {name!r}: null") if "null" in items else False
            )
            model = self.text(items.get("model"), f"category {name!r}: model")
            if model and not self.known(
                items["model"], model, (XCLIP,), f"category {name!r}: model ",
                listing="allowed: xclip (windows of video; leave out for CLIP's frames)",
            ):  # fmt: skip
                continue
            if model and null:
                self.error(items["null"], f"category {name!r}: an X-CLIP category is not null")
                continue
            if prompts:
                (windows if model else categories).append(
                    Category(name, prompts, null=null, model=model)
                )
        if categories and all(c.null for c in categories):
            self.error(node, "every category is null: at least one must be something to look for")
        clip_names = {c.name for c in categories}
        for category in detectors:
            spec = category.detector
            if spec is not None and spec.second_opinion_for not in ("", *clip_names):
                where = _detector_key_node(node, category.name, "second_opinion_for")
                self.known(
                    where or node,
                    spec.second_opinion_for,
                    sorted(clip_names),
                    f"category {category.name!r}: second_opinion_for names ",
                    ", which is not a category with prompts here",
                    listing=f"those: {', '.join(sorted(clip_names))}",
                )
        if (detectors or windows) and not categories:
            self.error(
                node,
                "a rule set with detector or X-CLIP categories needs at least one CLIP category"
                " with prompts beside them (CLIP samples the frames they look at)",
            )
        return tuple(categories), tuple(detectors), tuple(windows)

    def review_on_disagreement(self, top: dict[str, Node], detectors: Sequence[Category]) -> bool:
        if "review_on_disagreement" not in top:
            return False
        node = top["review_on_disagreement"]
        wanted = self.flag(node, "review_on_disagreement")
        if wanted and not any(c.detector and c.detector.second_opinion_for for c in detectors):
            self.error(
                node,
                "review_on_disagreement needs a second opinion to compare: give a detector"
                " category 'second_opinion_for: <a category with prompts>'",
            )
        return wanted

    def detector(self, node: Node, category: str) -> DetectorSpec | None:
        what = f"category {category!r}: detector"
        items = self.mapping(node, DETECTOR_KEYS, what, required=("model",))
        if not items or "model" not in items:
            return None
        model = self.text(items["model"], f"{what}.model", required=True)
        model_path = ""
        if model and model != NUDENET:
            where = Path(model).expanduser()
            if not where.is_absolute() and self.path:
                where = Path(self.path).parent / where  # beside the rule file
            # one file, one name: however a rule file spells its path, and whichever
            # folder two rule files with the same relative path sit in
            model = model_path = str(where.resolve())
        lists = {
            key: tuple(self.text(item, f"{what}.{key}", required=True) for item in entries)
            for key in ("classes", "model_classes")
            if key in items and (entries := self.sequence(items[key], f"{what}.{key}"))
        }
        limits = {
            key: value
            for key in ("min_confidence", "min_area")
            if key in items
            and (value := self.guard(items[key], parse_fraction, f"{what}.{key}")) is not None
        }
        classes = lists.get("classes") or (NUDENET_EXPOSED if model == NUDENET else ())
        hide = self.flag(items["hide"], f"{what}.hide") if "hide" in items else model == NUDENET
        opinion = self.text(items.get("second_opinion_for"), f"{what}.second_opinion_for")
        try:
            return DetectorSpec(
                model=model,
                classes=classes,
                hide=hide,
                model_classes=lists.get("model_classes", ()),
                model_path=model_path,
                second_opinion_for=opinion,
                **limits,
            )
        except ValueError as exc:
            # point at the key the message is about, where the file has it
            about = next((k for k in ("min_confidence", "min_area") if k in str(exc)), "classes")
            self.error(items.get(about, node), f"{what}: {exc}")
            return None

    def prompts(self, node: Node, category: str) -> tuple[str, ...]:
        items = self.sequence(node, f"category {category!r}: prompts")
        if items is None:
            return ()
        if not items:
            self.error(
                node, f"category {category!r} has an empty prompt list; give at least one caption"
            )
            return ()
        prompts = []
        for item in items:
            prompt = self.text(item, f"a prompt of {category!r}", required=True)
            if prompt:
                prompts.append(prompt)
        duplicates = sorted({p for p in prompts if prompts.count(p) > 1})
        if duplicates:
            self.error(node, f"category {category!r} repeats prompt(s): {', '.join(duplicates)}")
        return tuple(prompts)

    def rules(
        self, node: Node, categories: set[str], levels: tuple[str, ...]
    ) -> tuple[m.Rule, ...]:
        items = self.sequence(node, "rules")
        if items is None:
            return ()
        rules: list[m.Rule] = []
        seen: dict[str, int] = {}
        for item in items:
            fields = self.mapping(item, RULE_KEYS, "a rule", required=("id", "when", "then"))
            if fields is None:
                continue
            rule_id = self.text(fields.get("id"), "rule id", required="id" in fields)
            line = where(item)[0]
            if rule_id in seen:
                self.error(
                    fields["id"],
                    f"rule id {rule_id!r} is used twice (first on line {seen[rule_id]})",
                )
            seen.setdefault(rule_id, line)
            what = f"rule {rule_id!r}"
            when = self.condition(fields["when"], categories, what) if "when" in fields else None
            then = self.outcome(fields["then"], levels, what) if "then" in fields else None
            if rule_id and when is not None and then is not None:
                rules.append(
                    m.Rule(
                        id=rule_id,
                        when=when,
                        then=then,
                        description=self.text(fields.get("description"), "description"),
                        reference=self.text(fields.get("reference"), "reference"),
                        line=line,
                    )
                )
        return tuple(rules)

    def condition(self, node: Node, categories: set[str], what: str) -> m.Condition | None:
        if not isinstance(node, MappingNode):
            self.error(
                node,
                f"{what}: 'when' must be a mapping,"
                " e.g. {category: violence, coverage_above: 5%}",
            )
            return None
        keys = [key_text(k) for k, _ in node.value]
        combinators = [k for k in keys if k in COMBINATORS]
        if combinators:
            if len(keys) != 1:
                self.error(node, f"{what}: '{combinators[0]}' must stand alone in its mapping")
                return None
            return self.combinator(combinators[0], node.value[0][1], categories, what)
        if "check" in keys:
            return self.check_condition(node, what)
        reported = len(self.problems)
        fields = self.mapping(
            node, ("category", *m.METRICS), f"{what} condition", required=("category",)
        )
        misspelt = len(self.problems) > reported  # an unknown key: likely the metric
        if fields is None or "category" not in fields:
            return None
        category = self.text(fields["category"], "category", required=True)
        if category and not self.known(
            fields["category"],
            category,
            categories,
            f"{what} names category ",
            ", which is not defined",
            f"defined: {', '.join(sorted(categories))}",
        ):
            category = ""
        metrics = [k for k in fields if k in m.METRICS]
        if not metrics and misspelt:
            return None  # already reported, with a suggestion
        if len(metrics) != 1:
            self.error(
                node,
                f"{what}: a condition needs exactly one of {', '.join(m.METRICS)}"
                + (f" (found {', '.join(metrics)})" if metrics else ""),
            )
            return None
        metric = metrics[0]
        parse = parse_fraction if metric in m.FRACTION_METRICS else parse_seconds
        threshold = self.guard(fields[metric], parse, f"{what}: {metric}")
        if threshold is None or not category:
            return None
        return m.Clause(category, metric, threshold, line=where(node)[0])

    def check_condition(self, node: MappingNode, what: str) -> m.CheckClause | None:
        """``{check: photosensitivity, result: fail}``: a check measured on every frame."""
        fields = self.mapping(
            node, ("check", "result"), f"{what} check", required=("check", "result")
        )
        if fields is None or not {"check", "result"} <= set(fields):
            return None
        check = self.text(fields["check"], "check", required=True)
        if not self.known(
            fields["check"], check, m.CHECKS, f"{what}: no check ", "",
            f"checks: {', '.join(m.CHECKS)}",
        ):  # fmt: skip
            return None
        result = self.text(fields["result"], "result", required=True)
        results = m.CHECKS[check][1:]  # "pass" would hold for every video
        if not self.known(
            fields["result"], result, results, f"{what}: {check} result ", "",
            f"one of: {' | '.join(results)}",
        ):  # fmt: skip
            return None
        return m.CheckClause(check, result, line=where(node)[0])

    def combinator(
        self, word: str, node: Node, categories: set[str], what: str
    ) -> m.Condition | None:
        if word == "not":
            part = self.condition(node, categories, what)
            return m.NotOf(part) if part is not None else None
        items = self.sequence(node, f"{what}: '{word}'")
        if items is None:
            return None
        if not items:
            self.error(node, f"{what}: '{word}' needs at least one condition")
            return None
        parts = [self.condition(item, categories, what) for item in items]
        if any(p is None for p in parts):
            return None
        cls = m.AllOf if word == "all" else m.AnyOf
        return cls(tuple(p for p in parts if p is not None))

    def outcome(self, node: Node, levels: tuple[str, ...], what: str) -> m.Outcome | None:
        fields = self.mapping(node, OUTCOME_KEYS, f"{what}: 'then'")
        if fields is None:
            return None
        if not fields:
            self.error(node, f"{what}: 'then' needs at least one of {', '.join(OUTCOME_KEYS)}")
            return None
        schedule = None
        if "schedule" in fields:
            schedule = self.text(fields["schedule"], "schedule", required=True)
            if schedule:
                self.known(
                    fields["schedule"],
                    schedule,
                    levels,
                    f"{what}: schedule ",
                    " is not a level",
                    f"levels: {' < '.join(levels)}",
                )
        tags: list[str] = []
        if "tag" in fields:
            tags.append(self.text(fields["tag"], "tag", required=True))
        if "tags" in fields:
            for item in self.sequence(fields["tags"], f"{what}: tags") or []:
                tags.append(self.text(item, "tag", required=True))
        return m.Outcome(
            schedule=schedule or None,
            tags=tuple(t for t in dict.fromkeys(tags) if t),
            review=self.flag(fields["review"], f"{what}: review") if "review" in fields else False,
            warning=self.text(fields.get("warning"), "warning") or None,
        )

    def territories(self, node: Node | None, levels: tuple[str, ...]) -> tuple[m.Territory, ...]:
        if node is None:
            return tuple(DEFAULT_TERRITORIES)
        if not isinstance(node, MappingNode):
            self.error(node, "territories must be a mapping of territory name to its windows")
            return ()
        result = []
        for key, body in node.value:
            name = key_text(key)
            fields = self.mapping(
                body, TERRITORY_KEYS, f"territory {name!r}", required=("timezone",)
            )
            if not fields or "timezone" not in fields:
                continue
            zone = self.text(fields["timezone"], "timezone", required=True)
            try:
                ZoneInfo(zone)
            except (ZoneInfoNotFoundError, ValueError):
                self.error(
                    fields["timezone"],
                    f"territory {name!r}: unknown time zone {zone!r} (e.g. Europe/London)",
                )
            windows: dict[str, tuple[int, int]] = {}
            if "windows" in fields:
                for level, window in (
                    self.mapping(fields["windows"], levels, f"territory {name!r} windows") or {}
                ).items():
                    span = self.guard(
                        window, _parse_window, f"territory {name!r} window for {level!r}"
                    )
                    if span is not None:
                        windows[level] = span
            result.append(m.Territory(name, zone, windows))
        return tuple(result)

    def tests(
        self, node: Node | None, categories: set[str], levels: tuple[str, ...], rule_ids: set[str]
    ) -> tuple[m.RuleTest, ...]:
        if node is None:
            return ()
        cases = []
        for item in self.sequence(node, "tests") or []:
            fields = self.mapping(
                item, TEST_KEYS, "a test case", required=("name", "coverage", "expect")
            )
            if fields is None or not {"name", "coverage", "expect"} <= set(fields):
                continue
            name = self.text(fields["name"], "test name", required=True)
            duration = 60.0
            if "duration" in fields:
                duration = (
                    self.guard(fields["duration"], _positive_seconds, f"test {name!r}: duration")
                    or 60.0
                )
            margin = None
            if "near_miss_margin" in fields:
                margin = self.guard(fields["near_miss_margin"], parse_fraction, "near_miss_margin")
            coverage = self.test_coverage(fields["coverage"], categories, name)
            expect = self.expectation(fields["expect"], levels, rule_ids, name)
            checks = self.test_checks(fields["checks"], name) if "checks" in fields else {}
            line = where(item)[0]
            cases.append(
                m.RuleTest(name, duration, coverage, expect, f"{self.path}:{line}", margin, checks)
            )
        return tuple(cases)

    def test_checks(self, node: Node, test: str) -> dict[str, str]:
        """A test case's check results (unstated checks pass), e.g. photosensitivity: fail."""
        fields = self.mapping(node, tuple(m.CHECKS), f"test {test!r}: checks") or {}
        results = {}
        for check, value in fields.items():
            result = self.text(value, check, required=True)
            if self.known(value, result, m.CHECKS[check], f"test {test!r}: {check} result "):
                results[check] = result
        return results

    def test_coverage(
        self, node: Node, categories: set[str], test: str
    ) -> dict[str, dict[str, float]]:
        if not isinstance(node, MappingNode):
            self.error(
                node, f"test {test!r}: coverage must map category to its share (e.g. violence: 6%)"
            )
            return {}
        result: dict[str, dict[str, float]] = {}
        for key, value in node.value:
            name = key_text(key)
            if not self.known(key, name, categories, f"test {test!r}: unknown category "):
                continue
            if isinstance(value, ScalarNode):
                share = self.guard(value, parse_fraction, f"test {test!r}: {name}")
                if share is not None:
                    result[name] = {"share": share}
                continue
            fields = self.mapping(value, TEST_COVERAGE_KEYS, f"test {test!r}: {name}") or {}
            numbers: dict[str, float] = {}
            for field_name, field_node in fields.items():
                parse = parse_fraction if field_name == "share" else parse_seconds
                parsed = self.guard(field_node, parse, f"test {test!r}: {name}.{field_name}")
                if parsed is not None:
                    numbers[field_name] = parsed
            result[name] = numbers
        return result

    def expectation(
        self, node: Node, levels: tuple[str, ...], rule_ids: set[str], test: str
    ) -> dict[str, Any]:
        fields = self.mapping(node, EXPECT_KEYS, f"test {test!r}: expect") or {}
        expect: dict[str, Any] = {}
        for key, value in fields.items():
            if key == "schedule":
                level = self.text(value, "schedule", required=True)
                self.known(value, level, levels, f"test {test!r}: schedule ", " is not a level")
                expect[key] = level
            elif key == "review":
                expect[key] = self.flag(value, f"test {test!r}: review")
            else:
                words = [
                    self.text(i, key, required=True)
                    for i in self.sequence(value, f"test {test!r}: {key}") or []
                ]
                if key in ("fired", "near_misses"):
                    for word, item in zip(words, value.value):
                        self.known(item, word, rule_ids, f"test {test!r}: no rule ")
                expect[key] = words
        return expect


def _detector_key_node(categories: Node, name: str, key: str) -> Node | None:
    """The node of ``key`` in category ``name``'s detector block, for an error's line."""
    for found in _mapping_values(categories, name):
        for detector in _mapping_values(found, "detector"):
            for value in _mapping_values(detector, key):
                return value
    return None


def _mapping_values(node: Node, key: str) -> list[Node]:
    if not isinstance(node, MappingNode):
        return []
    return [value for k, value in node.value if key_text(k) == key]


def _declared_names(node: Node | None) -> set[str]:
    if not isinstance(node, MappingNode):
        return set()
    return {key_text(key) for key, _ in node.value if key_text(key).strip()}


def _declared_rule_ids(node: Node | None) -> set[str]:
    if not isinstance(node, SequenceNode):
        return set()
    ids = set()
    for item in node.value:
        if isinstance(item, MappingNode):
            for key, value in item.value:
                if key_text(key) == "id" and isinstance(value, ScalarNode) and value.value:
                    ids.add(str(value.value).strip())
    return ids


def _positive_number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"must be a positive number, got {value!r}")
    return float(value)


def _positive_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"must be a whole number >= 1, got {value!r}")
    return value


def _positive_seconds(value: object) -> float:
    seconds = parse_seconds(value)
    if seconds <= 0:
        raise ValueError("must be longer than 0 s")
    return seconds


def _parse_window(value: object) -> tuple[int, int]:
    if not isinstance(value, str) or "-" not in value:
        raise ValueError(f"{value!r} is not a window; write HH:MM-HH:MM, e.g. 21:00-05:30")
    start, end = value.split("-", 1)
    first, last = parse_clock(start), parse_clock(end)
    if first == last:
        raise ValueError("a window must not start and end at the same time")
    return first, last


def _unexpected(path: str, exc: Exception) -> RuleSetError:
    """Anything but a RuleSetError while loading untrusted text (a RecursionError, a
    MemoryError, a bug) is still a problem of that file, never an internal crash."""
    return RuleSetError(
        [
            Problem(
                path,
                None,
                None,
                f"could not be loaded ({type(exc).__name__}: {exc}); simplify the file,"
                " and report it if it is an ordinary rule file",
            )
        ]
    )


def parse_ruleset(text: str, path: str = "<text>") -> m.RuleSet:
    """A rule set from YAML text; raises RuleSetError listing every problem."""
    try:
        return _parse_ruleset(text, path)
    except RuleSetError:
        raise
    except Exception as exc:  # see _unexpected
        raise _unexpected(path, exc) from exc


def _parse_ruleset(text: str, path: str) -> m.RuleSet:
    try:
        root = compose(text, path)
    except YamlRejected as exc:
        raise RuleSetError([exc.problem]) from None
    parser = _Parser(path)
    ruleset = parser.ruleset(root, text)
    if parser.problems or ruleset is None:
        raise RuleSetError(sorted(parser.problems, key=lambda p: (p.line or 0, p.column or 0)))
    return ruleset


def load_ruleset(path: str | Path) -> m.RuleSet:
    """A rule set from a file, with its tests (from the file and from ``NAME.tests.yaml``
    beside it); raises RuleSetError, whatever went wrong with the file."""
    path = Path(path)
    try:
        return _load_ruleset(path)
    except RuleSetError:
        raise
    except Exception as exc:  # see _unexpected
        raise _unexpected(str(path), exc) from exc


def _load_ruleset(path: Path) -> m.RuleSet:
    try:
        text = read_text(path)
    except FileNotFoundError:
        raise RuleSetError([Problem(str(path), None, None, "rule file not found")]) from None
    except YamlRejected as exc:
        raise RuleSetError([exc.problem]) from None
    except OSError as exc:
        raise RuleSetError(
            [Problem(str(path), None, None, f"cannot be read: {exc.strerror}")]
        ) from None
    ruleset = parse_ruleset(text, str(path))
    sidecar = tests_file_for(path)
    if sidecar.is_file():
        ruleset = _with_sidecar_tests(ruleset, sidecar)
    return ruleset


def tests_file_for(path: Path) -> Path:
    return path.with_name(path.stem + ".tests" + path.suffix)


def _with_sidecar_tests(ruleset: m.RuleSet, sidecar: Path) -> m.RuleSet:
    """Tests kept in a file beside the rule set: ``tests:`` only, checked against it."""
    from dataclasses import replace

    try:
        text = read_text(sidecar)
        root = compose(text, str(sidecar))
    except YamlRejected as exc:
        raise RuleSetError([exc.problem]) from None
    parser = _Parser(str(sidecar))
    fields = parser.mapping(root, ("tests",), "a tests file", required=("tests",)) if root else None
    tests: tuple[m.RuleTest, ...] = ()
    if fields and "tests" in fields:
        tests = parser.tests(
            fields["tests"],
            {c.name for c in ruleset.all_categories},
            ruleset.levels,
            {r.id for r in ruleset.rules},
        )
    if root is None:
        parser.error(None, "the tests file is empty")
    if parser.problems:
        raise RuleSetError(parser.problems)
    return replace(ruleset, tests=ruleset.tests + tests)


def rule_files(paths: Sequence[str | Path]) -> list[Path]:
    """Rule files named, or found in named folders (``*.yaml``/``*.yml``, not ``*.tests.*``)."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
            files.extend(p for p in found if not p.stem.endswith(".tests"))
        else:
            files.append(path)
    return files


def load_catalogue(
    paths: Sequence[str | Path],
    *,
    fallback: Callable[[Path, Sequence[Problem]], m.RuleSet | None] | None = None,
) -> tuple[list[m.RuleSet], list[Problem]]:
    """Every rule set that loads, and the problems of those that do not (a broken file
    does not stop the others from loading). ``fallback(path, problems)`` may stand in
    for a broken file (e.g. with its last good version); it reports that itself."""
    rulesets: list[m.RuleSet] = []
    problems: list[Problem] = []
    names: dict[str, str] = {}
    for path in rule_files(paths):
        try:
            ruleset = load_ruleset(path)
        except RuleSetError as exc:
            stand_in = fallback(path, exc.problems) if fallback is not None else None
            if stand_in is None:
                problems.extend(exc.problems)
                continue
            ruleset = stand_in
        if ruleset.name in names:
            problems.append(
                Problem(
                    str(path),
                    None,
                    None,
                    f"rule set name {ruleset.name!r} is already used by {names[ruleset.name]}",
                )
            )
            continue
        names[ruleset.name] = str(path)
        rulesets.append(ruleset)
    return rulesets, problems
