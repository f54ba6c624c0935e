"""Class names as the rules want them: aliases, per-class minimum confidence, a class filter.

Sites bring models whose class names are not trakr's trigger names (``NO-Hardhat``,
``Safety Vest``...). A :class:`ClassMap` renames a detector's rows through ``aliases`` (model
class -> trigger), drops rows under a per-class minimum confidence and keeps only the listed
classes. Names match ignoring case, spaces, ``-`` and ``_`` (:func:`normalise`), so
``"no_hardhat"`` in a config matches the model's ``"NO-Hardhat"``. An alias value may list
several triggers separated by ``:`` (a classifier label ``"no_helmet_no_vest"`` ->
``"nohelmet:novest"``); a detector row takes the first. The model's own name stays in
``data["model_class"]``.

:func:`trigger_sources` says which triggers a model's class list can produce, and how: directly,
by alias, by PPE association (a ``no<item>`` whose ``<item>`` the model emits) or by a crop
classifier. ``trakr config check`` prints it; :func:`trakr.config.trigger_warnings` uses it.

Example:
    >>> import numpy as np, supervision as sv
    >>> cm = ClassMap({"no hardhat": "nohelmet", "Safety-Vest": "vest"}, {"vest": 0.5}, [])
    >>> dets = sv.Detections(xyxy=np.zeros((3, 4)), confidence=np.array([0.9, 0.4, 0.8]),
    ...                      class_id=np.array([2, 7, 7]),
    ...                      data={"class_name": np.array(["NO-Hardhat", "Safety Vest", "Safety Vest"])})
    >>> out = cm.apply(dets)
    >>> out.data["class_name"].tolist(), out.data["model_class"].tolist()
    (['nohelmet', 'vest'], ['NO-Hardhat', 'Safety Vest'])
    >>> trigger_sources(["Person", "NO-Hardhat", "Hardhat"], {"person": "person", "no-hardhat": "nohelmet",
    ...                 "hardhat": "helmet"}, ["nohelmet", "novest"])["nohelmet"]
    ['alias NO-Hardhat']
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import cast

import numpy as np
import supervision as sv

MODEL_CLASS = "model_class"
"""``Detections.data`` key holding the model's own class name after :meth:`ClassMap.apply`."""

_IGNORED = re.compile(r"[\s\-_]+")


def normalise(name: str) -> str:
    """``name`` lower-cased without spaces, ``-`` and ``_``: how class names are compared.

    >>> normalise("NO-Safety Vest"), normalise("no_safety_vest")
    ('nosafetyvest', 'nosafetyvest')
    """
    return _IGNORED.sub("", str(name)).lower()


def split_triggers(value: str) -> list[str]:
    """An alias value as its triggers: ``"nohelmet:novest"`` -> ``["nohelmet", "novest"]``."""
    return [t.strip() for t in str(value).split(":") if t.strip()]


class ClassMap:
    """Aliases, per-class minimum confidence and a class filter, applied to one detector output.

    ``aliases``: model class -> trigger (``:``-separated triggers allowed). ``confidence``: class
    (model name or trigger) -> minimum confidence. ``classes``: keep only these classes (model
    names or triggers); empty keeps all. Every key matches ignoring case, spaces, ``-``, ``_``.
    """

    def __init__(
        self,
        aliases: Mapping[str, str] | None = None,
        confidence: Mapping[str, float] | None = None,
        classes: Iterable[str] = (),
    ):
        self.aliases = {normalise(k): split_triggers(v) for k, v in (aliases or {}).items()}
        self.confidence = {normalise(k): float(v) for k, v in (confidence or {}).items()}
        self.classes = {normalise(c) for c in classes}
        self._cache: dict[str, tuple[str, float, bool]] = {}

    @property
    def identity(self) -> bool:
        """Nothing to do: no alias, no threshold, no filter."""
        return not (self.aliases or self.confidence or self.classes)

    def triggers(self, model_name: str) -> list[str]:
        """The trigger(s) a model class maps to (itself when no alias names it)."""
        return self.aliases.get(normalise(model_name)) or [str(model_name)]

    def name(self, model_name: str) -> str:
        """The trigger a detector row of class ``model_name`` becomes."""
        return self.triggers(model_name)[0]

    def _rule(self, model_name: str) -> tuple[str, float, bool]:
        """(new name, minimum confidence, kept by the filter) for one model class, cached."""
        rule = self._cache.get(model_name)
        if rule is None:
            new = self.name(model_name)
            keys = [normalise(model_name), normalise(new)]
            floor = max((self.confidence[k] for k in keys if k in self.confidence), default=0.0)
            kept = not self.classes or any(k in self.classes for k in keys)
            rule = self._cache[model_name] = (new, floor, kept)
        return rule

    def mapped_names(self, class_names: Iterable[str]) -> list[str]:
        """The names a model with ``class_names`` emits after mapping (filtered classes left out)."""
        out: list[str] = []
        for n in class_names:
            new, _, kept = self._rule(str(n))
            if kept and new not in out:
                out.append(new)
        return out

    def apply(self, detections: sv.Detections) -> sv.Detections:
        """``detections`` renamed, thresholded and filtered (a new object; the input is not changed)."""
        if self.identity or len(detections) == 0 or "class_name" not in detections.data:
            return detections
        names = np.asarray(detections.data["class_name"])
        uniq, inverse = np.unique(names, return_inverse=True)
        rules = [self._rule(str(u)) for u in uniq]
        new = np.array([r[0] for r in rules], dtype=object)[inverse].astype(str)
        floor = np.array([r[1] for r in rules], dtype=float)[inverse]
        kept = np.array([r[2] for r in rules], dtype=bool)[inverse]
        conf = detections.confidence if detections.confidence is not None else np.ones(len(names))
        keep = kept & (conf >= floor)
        out = cast(sv.Detections, detections[keep])  # supervision's indexing is typed as a union
        out.data[MODEL_CLASS] = names[keep]
        out.data["class_name"] = new[keep]
        return out


def emitted_as(name: str, emitted: Iterable[str]) -> str | None:
    """The name in ``emitted`` that ``name`` matches (ignoring case, spaces, ``-``, ``_``), if any.

    >>> emitted_as("safety vest", ["Person", "Safety-Vest"])
    'Safety-Vest'
    """
    key = normalise(name)
    return next((e for e in emitted if normalise(e) == key), None)


def trigger_sources(
    class_names: Iterable[str],
    aliases: Mapping[str, str] | None,
    triggers: Iterable[str],
    *,
    person: str = "person",
    association: bool = True,
    classifier_labels: Iterable[str] = (),
    classifier_aliases: Mapping[str, str] | None = None,
    built_in: Iterable[str] = ("social_distancing",),
) -> dict[str, list[str]]:
    """For each trigger, how this model can produce it (empty list: it cannot).

    ``direct NAME`` (a class with the trigger's exact name), ``alias NAME`` (a class mapped to
    it), ``association ITEM`` (a ``no<item>`` trigger: persons without an ``<item>`` box, when
    the model emits both), ``classifier LABEL`` (a crop classifier label mapped to it) or
    ``built-in`` (rules such as ``social_distancing``).

    >>> trigger_sources(["person", "helmet"], {}, ["person", "nohelmet", "novest"])
    {'person': ['direct person'], 'nohelmet': ['association helmet'], 'novest': []}
    """
    cm = ClassMap(aliases)
    emitted: dict[str, list[str]] = {}
    for n in class_names:
        for t in cm.triggers(str(n)):
            emitted.setdefault(t, []).append(str(n))
    labels = {**dict(aliases or {}), **dict(classifier_aliases or {})}
    cls_map = ClassMap(labels)
    by_classifier: dict[str, list[str]] = {}
    for label in classifier_labels:
        for t in cls_map.triggers(str(label)):
            by_classifier.setdefault(t, []).append(str(label))
    fixed = set(built_in)
    out: dict[str, list[str]] = {}
    for trig in dict.fromkeys(triggers):
        how = [f"{'direct' if n == trig else 'alias'} {n}" for n in emitted.get(trig, [])]
        item = emitted_as(trig[2:], emitted) if trig.startswith("no") and len(trig) > 2 else None
        if association and item and not emitted.get(trig) and emitted_as(person, emitted):
            how.append(f"association {item}")
        how += [f"classifier {label}" for label in by_classifier.get(trig, [])]
        if trig in fixed:
            how.append("built-in")
        out[trig] = how
    return out


def camera_triggers(cam) -> list[str]:  # noqa: ANN001 - a trakr.config.CameraConfig (no import: config imports late)
    """Every trigger camera ``cam`` lists, camera-wide and in its ROIs, in order, once."""
    out = list(cam.detection)
    for roi in cam.roi_config.values():
        out += roi.detections
    return list(dict.fromkeys(out))


def camera_trigger_sources(
    config, cam, class_names: Iterable[str], classifier_labels: Iterable[str] = ()
) -> dict[str, list[str]]:  # noqa: ANN001
    """:func:`trigger_sources` for the triggers of ``cam`` under ``config`` (a :class:`trakr.config.SysConfig`)."""
    from trakr.faces.options import is_face_trigger

    det, ppe = config.trakr.detector, config.trakr.ppe
    cm = ClassMap(det.class_aliases, None, det.classes)
    kept = [str(n) for n in class_names if cm._rule(str(n))[2]]  # the class filter applies first
    out = trigger_sources(
        kept,
        det.class_aliases,
        camera_triggers(cam),
        person=ppe.person_class,
        association=ppe.association != "off",
        classifier_labels=classifier_labels if ppe.classifier is not None else (),
        classifier_aliases=ppe.classifier.aliases if ppe.classifier is not None else None,
    )
    for trig in out:  # unknown_face, face:<name>: the face stage, on cameras that have it on
        if is_face_trigger(trig) and cam.faces and emitted_as(ppe.person_class, kept):
            out[trig].append("face stage")
    return out
