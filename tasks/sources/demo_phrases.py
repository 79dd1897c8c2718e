"""Sentence bank of the synthetic demo corpus (written for this project; not MIMIC text).

Each entry is ``(template, effects)`` where ``effects`` maps a CheXpert condition to the label the
sentence carries (1 positive, 0 negative, -1 uncertain). Templates use ``{side}``, ``{Side}``,
``{size}``, ``{grade}``, ``{gradely}``, ``{lobe}``, ``{cm}``, ``{rib}`` slots. Entries tagged with ``nle`` explain a diagnosis
(MIMIC-NLE style): ``(diagnoses, evidence)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Phrase:
    text: str
    effects: dict[str, int]
    nle: tuple[tuple[str, ...], tuple[str, ...]] | None = None
    impression: str | None = None  # short restatement for the impression section
    tags: frozenset[str] = field(default_factory=frozenset)


def P(text: str, effects: dict[str, int], *, nle=None, impression=None, tags=()) -> Phrase:
    return Phrase(text, effects, nle, impression, frozenset(tags))


EC, CM, LO, LL = "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion"
ED, CO, PN, AT = "Edema", "Consolidation", "Pneumonia", "Atelectasis"
PX, PE, PO, FR, SD = "Pneumothorax", "Pleural Effusion", "Pleural Other", "Fracture", "Support Devices"

POSITIVE: dict[str, list[Phrase]] = {
    EC: [
        P("The mediastinum is widened compared to the prior study.", {EC: 1}, impression="Widened mediastinum."),
        P("There is widening of the superior mediastinum.", {EC: 1}, impression="Mediastinal widening."),
        P("The cardiomediastinal silhouette is enlarged.", {EC: 1}, impression="Enlarged cardiomediastinal silhouette."),
    ],
    CM: [
        P("The heart is {gradely} enlarged.", {CM: 1}, impression="{Grade} cardiomegaly."),
        P("{Grade} cardiomegaly is unchanged.", {CM: 1}, impression="Stable {grade} cardiomegaly."),
        P("There is enlargement of the cardiac silhouette.", {CM: 1}, impression="Cardiomegaly."),
    ],
    LO: [
        P("There is a patchy opacity in the {side} {lobe}.", {LO: 1}, impression="{Side} {lobe} opacity."),
        P("Hazy opacities are seen at the {side} lung base.", {LO: 1}, impression="{Side} basilar opacity."),
        P("Bilateral interstitial opacities are present.", {LO: 1}, impression="Bilateral interstitial opacities."),
    ],
    LL: [
        P("A {cm} cm nodule is seen in the {side} upper lobe.", {LL: 1}, impression="{Side} upper lobe nodule; CT is recommended."),
        P("There is a {side} hilar mass.", {LL: 1}, impression="{Side} hilar mass."),
        P("A spiculated lesion in the {side} mid lung is again noted.", {LL: 1}, impression="Known {side} lung lesion."),
    ],
    ED: [
        P("There is {grade} pulmonary edema.", {ED: 1}, impression="{Grade} pulmonary edema."),
        P("Interstitial edema has worsened since the prior study.", {ED: 1}, impression="Worsening interstitial edema."),
        P("Pulmonary vascular congestion with {grade} interstitial edema is present.", {ED: 1},
          impression="{Grade} pulmonary edema."),
    ],
    CO: [
        P("There is consolidation in the {side} lower lobe.", {CO: 1}, impression="{Side} lower lobe consolidation."),
        P("Dense {side} basilar consolidation is present.", {CO: 1}, impression="{Side} basilar consolidation."),
    ],
    PN: [
        P("Findings are compatible with {side} lower lobe pneumonia.", {PN: 1}, impression="{Side} lower lobe pneumonia."),
        P("There is a {side} upper lobe pneumonia.", {PN: 1}, impression="{Side} upper lobe pneumonia."),
        P("Dense consolidation in the {side} lower lobe is consistent with pneumonia.", {CO: 1, PN: 1},
          nle=((PN,), (CO,)), impression="{Side} lower lobe pneumonia."),
    ],
    AT: [
        P("Bibasilar atelectasis is present.", {AT: 1}, impression="Bibasilar atelectasis."),
        P("There is {side} lower lobe atelectasis.", {AT: 1}, impression="{Side} lower lobe atelectasis."),
        P("Plate-like atelectasis is seen at the {side} base.", {AT: 1}, impression="{Side} basilar atelectasis."),
    ],
    PX: [
        P("There is a small {side} apical pneumothorax.", {PX: 1}, impression="Small {side} pneumothorax."),
        P("The {side} pneumothorax is unchanged in size.", {PX: 1}, impression="Stable {side} pneumothorax."),
    ],
    PE: [
        P("There is a {size} {side} pleural effusion.", {PE: 1}, impression="{Size} {side} pleural effusion."),
        P("Bilateral pleural effusions have increased.", {PE: 1}, impression="Increasing bilateral pleural effusions."),
        P("A {size} {side} effusion is again seen.", {PE: 1}, impression="{Size} {side} effusion."),
    ],
    PO: [
        P("{Side} pleural thickening is unchanged.", {PO: 1}, impression="Stable {side} pleural thickening."),
        P("Calcified pleural plaques are seen bilaterally.", {PO: 1}, impression="Calcified pleural plaques."),
    ],
    FR: [
        P("There is a displaced fracture of the {side} {rib} rib.", {FR: 1}, impression="{Side} {rib} rib fracture."),
        P("Healed {side} rib fractures are noted.", {FR: 1}, impression="Old {side} rib fractures."),
        P("A compression fracture of a lower thoracic vertebral body is unchanged.", {FR: 1},
          impression="Stable thoracic compression fracture."),
    ],
    SD: [
        P("An endotracheal tube terminates {cm} cm above the carina.", {SD: 1}, tags=("icu",)),
        P("A nasogastric tube courses below the diaphragm with its tip in the stomach.", {SD: 1}, tags=("icu",)),
        P("A {side}-sided PICC line terminates in the mid SVC.", {SD: 1}),
        P("{Side}-sided pacemaker leads terminate in the right atrium and right ventricle.", {SD: 1}),
        P("Median sternotomy wires are intact.", {SD: 1}),
        P("A {side} chest tube is in place.", {SD: 1}, tags=("icu",)),
    ],
}

UNCERTAIN: dict[str, list[Phrase]] = {
    EC: [P("The mediastinum may be slightly widened, possibly due to technique.", {EC: -1})],
    CM: [P("The cardiac silhouette may be mildly enlarged.", {CM: -1})],
    LO: [P("A faint opacity at the {side} base may be due to overlying soft tissue.", {LO: -1})],
    LL: [P("A possible nodular density in the {side} mid lung could represent a nipple shadow.", {LL: -1})],
    ED: [P("Perihilar haziness may reflect mild edema.", {ED: -1}, nle=((ED,), ()))],
    CO: [P("Consolidation at the {side} base cannot be excluded.", {CO: -1})],
    PN: [P("{Side} basilar opacity may represent pneumonia.", {LO: 1, PN: -1}, nle=((PN,), (LO,)),
           impression="{Side} basilar opacity, possibly pneumonia.")],
    AT: [P("{Side} basilar opacity likely reflects atelectasis.", {LO: 1, AT: -1}, nle=((AT,), (LO,)),
           impression="{Side} basilar opacity, likely atelectasis.")],
    PX: [P("A tiny {side} apical pneumothorax cannot be excluded.", {PX: -1})],
    PE: [P("Blunting of the {side} costophrenic angle may reflect a trace effusion.", {PE: -1},
           nle=((PE,), ()))],
    PO: [P("There is possible {side} apical pleural thickening.", {PO: -1})],
    FR: [P("A possible nondisplaced fracture of the {side} {rib} rib is questioned.", {FR: -1})],
}

NEGATIVE: dict[str, list[Phrase]] = {
    EC: [P("The mediastinal contours are normal.", {EC: 0})],
    CM: [P("Heart size is normal.", {CM: 0}), P("The heart is not enlarged.", {CM: 0})],
    LO: [P("No focal opacity is seen.", {LO: 0})],
    LL: [P("No suspicious pulmonary nodules are identified.", {LL: 0})],
    ED: [P("There is no pulmonary edema.", {ED: 0}), P("No evidence of pulmonary edema.", {ED: 0})],
    CO: [P("There is no focal consolidation.", {CO: 0}), P("No focal consolidation.", {CO: 0})],
    PN: [P("There is no evidence of pneumonia.", {PN: 0})],
    AT: [P("There is no atelectasis.", {AT: 0})],
    PX: [P("There is no pneumothorax.", {PX: 0}), P("No pneumothorax is seen.", {PX: 0})],
    PE: [P("There is no pleural effusion.", {PE: 0}), P("No pleural effusion.", {PE: 0})],
    PO: [P("No pleural thickening is seen.", {PO: 0})],
    FR: [P("No displaced rib fractures are identified.", {FR: 0})],
}

NORMAL: list[Phrase] = [
    P("The lungs are clear.", {}),
    P("Heart size is normal.", {CM: 0}),
    P("The cardiomediastinal silhouette is within normal limits.", {EC: 0}),
    P("No pleural effusion or pneumothorax.", {PE: 0, PX: 0}),
    P("There is no focal consolidation.", {CO: 0}),
    P("There is no pulmonary edema.", {ED: 0}),
    P("Hilar contours are unremarkable.", {}),
    P("No acute osseous abnormality is seen.", {}),
]

NORMAL_IMPRESSIONS = (
    "No acute cardiopulmonary process.",
    "No acute intrathoracic abnormality.",
    "Normal chest radiograph.",
)

INDICATIONS = (
    "shortness of breath", "fever and cough", "chest pain", "hypoxia", "s/p line placement",
    "fall with chest wall pain", "productive cough", "new oxygen requirement", "preoperative evaluation",
    "intubated patient",
)
QUESTIONS = ("eval for pneumonia", "?effusion", "eval for acute process", "line placement",
             "?pneumothorax", "interval change")

SIDES = ("right", "left")
SIZES = ("small", "moderate", "large", "trace")
GRADES = ("mild", "moderate", "severe")
LOBES = ("lower lobe", "upper lobe", "middle lobe", "lingula")
RIBS = ("fourth", "fifth", "sixth", "seventh", "eighth")
