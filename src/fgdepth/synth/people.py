"""Procedural people: an articulated body of ellipsoids and sphere-chains, posed, dressed and rendered
orthographically with per-pixel depth.

Body frame (metres): x to the person's left (image right when facing the camera), y up, z away from the camera
(the person faces -z at yaw 0); the ground is y = 0. The sprite is rendered with rays along +z, supersampled 3x
(the centre sub-sample gives the depth), and cropped to its alpha.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from fgdepth.scene import Foreground
from fgdepth.synth import textures as tx

_SS = 3  # supersampling per pixel side (odd: the centre sub-sample gives the depth)
_MARGIN = 3  # output pixels of empty border around the figure
MAX_DEPTH_OFFSET_M = 0.5

# regions (what covers a body part)
SKIN, HAIR, TOP, INNER, BOTTOM, SHOES, HEAD, TIGHTS, OBJECT = range(9)

_SKIN_TONES = np.array(
    [[0.98, 0.85, 0.76], [0.94, 0.76, 0.64], [0.87, 0.68, 0.53], [0.78, 0.57, 0.42], [0.65, 0.45, 0.3],
     [0.52, 0.35, 0.23], [0.4, 0.26, 0.17], [0.28, 0.18, 0.12]]
)  # fmt: skip
_HAIR_COLORS = np.array(
    [[0.05, 0.04, 0.03], [0.15, 0.09, 0.05], [0.3, 0.18, 0.09], [0.55, 0.4, 0.22], [0.8, 0.68, 0.45],
     [0.6, 0.6, 0.6], [0.88, 0.87, 0.85], [0.5, 0.18, 0.08]]
)  # fmt: skip
# office-like clothing colours first (grey, beige, white, navy, black), then brighter ones
_CLOTHES = np.array(
    [[0.5, 0.5, 0.52], [0.75, 0.7, 0.6], [0.92, 0.92, 0.9], [0.15, 0.18, 0.3], [0.08, 0.08, 0.09],
     [0.3, 0.3, 0.32], [0.6, 0.55, 0.45], [0.85, 0.88, 0.95], [0.45, 0.35, 0.25], [0.2, 0.25, 0.2],
     [0.6, 0.1, 0.1], [0.15, 0.35, 0.6], [0.85, 0.75, 0.2], [0.3, 0.5, 0.3], [0.6, 0.3, 0.5],
     [0.9, 0.5, 0.3], [0.35, 0.6, 0.7], [0.8, 0.8, 0.8]]
)  # fmt: skip


@dataclass
class _Prim:
    centre: np.ndarray  # (3,)
    rot: np.ndarray  # (3, 3) local-to-body rotation (columns = local axes)
    radii: np.ndarray  # (3,)
    region: int
    hairline: float | None = (
        None  # hair only: keep local y > hairline, or behind the face (z > 0.1) above the jaw
    )
    box: bool = False  # a box (half sizes = radii) instead of an ellipsoid: held objects, bags

    def extent(self) -> np.ndarray:
        """(3,) half sizes of the axis-aligned bounding box in the body frame."""
        if self.box:
            return (np.abs(self.rot) * self.radii).sum(axis=1)
        return np.sqrt(((self.rot * self.radii) ** 2).sum(axis=1))


def _rx(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _ry(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rz(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _align(direction: np.ndarray) -> np.ndarray:
    """A rotation whose local y axis is ``direction`` (for limb-aligned ellipsoids)."""
    y = direction / np.linalg.norm(direction)
    ref = np.array([0.0, 0.0, 1.0]) if abs(y[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    x = np.cross(y, ref)
    x /= np.linalg.norm(x)
    z = np.cross(x, y)
    return np.stack([x, y, z], axis=1)


def _chain(a: np.ndarray, b: np.ndarray, ra: float, rb: float, region, prims: list[_Prim]) -> None:
    """Spheres from a to b with radius going from ra to rb (a smooth tapered capsule).

    ``region`` is an int, or a function of the fraction along the chain returning one (sleeves, skirts).
    """
    length = float(np.linalg.norm(b - a))
    n = max(2, int(np.ceil(length / (0.3 * min(ra, rb)))) + 1)
    for f in np.linspace(0.0, 1.0, n):
        r = ra + (rb - ra) * f
        reg = region(f) if callable(region) else region
        prims.append(_Prim(a + (b - a) * f, np.eye(3), np.full(3, r), reg))


def _sample_pose(rng: np.random.Generator) -> dict:
    """Joint angles (radians). Keys: hip/knee/shoulder_flex/shoulder_abd/shoulder_rot/elbow per side, lean, twist."""
    kind = rng.choice(["stand", "stand", "walk", "walk", "gesture", "gesture", "sit", "phone"])
    z = {k: np.zeros(2) for k in ("hip", "hip_abd", "knee", "sh_flex", "sh_abd", "sh_rot", "elbow")}
    p = {**z, "lean": rng.normal(0, 0.04), "twist": rng.normal(0, 0.08), "head_yaw": rng.normal(0, 0.25),
         "head_pitch": rng.normal(0.05, 0.1), "kind": str(kind)}  # fmt: skip
    p["sh_abd"] = rng.uniform(0.05, 0.2, 2)
    p["elbow"] = rng.uniform(0.05, 0.35, 2)
    p["sh_flex"] = rng.normal(0, 0.08, 2)
    p["hip_abd"] = rng.uniform(0.0, 0.08, 2)
    if kind == "stand":
        p["knee"] = rng.uniform(0.0, 0.12, 2)
        if rng.random() < 0.4:  # hands together in front / in pockets / on hip
            k = int(rng.integers(2))
            p["sh_flex"][k], p["elbow"][k], p["sh_rot"][k] = (
                rng.uniform(0.1, 0.5),
                rng.uniform(0.8, 1.6),
                rng.uniform(0.3, 0.8),
            )
        if rng.random() < 0.2:
            p["sh_abd"][:] = rng.uniform(0.3, 0.6)
            p["elbow"][:] = rng.uniform(1.2, 1.8)
            p["sh_rot"][:] = -0.4
    elif kind == "walk":
        a = rng.uniform(0.2, 0.45) * rng.choice([-1, 1])
        p["hip"] = np.array([a, -a])
        p["knee"] = np.array([0.1, 0.1]) + np.where(
            p["hip"] < 0, rng.uniform(0.3, 0.6), rng.uniform(0.0, 0.15)
        )
        p["sh_flex"] = np.array([-a, a]) * rng.uniform(0.6, 1.0)
        p["elbow"] = rng.uniform(0.2, 0.6, 2)
        p["lean"] = rng.uniform(0.0, 0.08)
    elif kind == "gesture":
        k = int(rng.integers(2))
        style = rng.integers(3)
        if style == 0:  # arm raised
            p["sh_flex"][k] = rng.uniform(1.8, 2.9)
            p["sh_abd"][k] = rng.uniform(0.0, 0.5)
            p["elbow"][k] = rng.uniform(0.0, 0.8)
        elif style == 1:  # pointing sideways / forwards
            p["sh_abd"][k] = rng.uniform(0.9, 1.5)
            p["sh_flex"][k] = rng.uniform(0.0, 0.7)
            p["elbow"][k] = rng.uniform(0.0, 0.3)
        else:  # explaining: both forearms up
            p["sh_flex"][:] = rng.uniform(0.2, 0.6, 2)
            p["elbow"][:] = rng.uniform(1.0, 1.7, 2)
            p["sh_rot"][:] = rng.uniform(0.0, 0.5, 2)
        if rng.random() < 0.3:
            p["sh_flex"][1 - k] = rng.uniform(1.5, 2.8)
        p["knee"] = rng.uniform(0.0, 0.15, 2)
    elif kind == "sit":  # sitting on something the background does not show, or crouching
        h = rng.uniform(1.1, 1.6)
        p["hip"] = np.array([h, h]) + rng.normal(0, 0.1, 2)
        p["knee"] = p["hip"] + rng.normal(0, 0.15, 2)
        p["hip_abd"] = rng.uniform(0.05, 0.25, 2)
        p["lean"] = -rng.uniform(0.0, 0.2)
        p["sh_flex"] = rng.uniform(0.2, 0.7, 2)
        p["elbow"] = rng.uniform(0.6, 1.4, 2)
    else:  # phone at the ear
        k = int(rng.integers(2))
        p["sh_flex"][k], p["sh_abd"][k], p["elbow"][k], p["sh_rot"][k] = 0.5, 0.5, 2.5, 0.6
        p["knee"] = rng.uniform(0.0, 0.15, 2)
    return p


def _build(rng: np.random.Generator) -> tuple[list[_Prim], dict]:
    """Body primitives (body frame, before the ground shift) and the appearance choices."""
    H = rng.uniform(1.5, 1.95)
    female = rng.random() < 0.5
    g = float(np.clip(rng.normal(1.0, 0.13), 0.78, 1.45))  # girth
    belly = float(np.clip(rng.normal(1.0, 0.12) * (g if g > 1.1 else 1.0), 0.85, 1.5))
    sw = H * (rng.uniform(0.095, 0.11) if female else rng.uniform(0.105, 0.125)) * g**0.3
    hw = H * (rng.uniform(0.055, 0.065) if female else rng.uniform(0.048, 0.057)) * g**0.5
    pose = _sample_pose(rng)
    look = _appearance(rng, female)
    prims: list[_Prim] = []

    # legs
    hip_y = 0.52 * H
    thigh, shin = 0.235 * H, 0.24 * H
    feet = []
    for k, side in enumerate((-1.0, 1.0)):  # right, left
        hip = np.array([side * hw, hip_y, 0.0])
        r_thigh = _rx(pose["hip"][k]) @ _rz(side * pose["hip_abd"][k])
        knee = hip + r_thigh @ np.array([0, -thigh, 0])
        ankle = knee + r_thigh @ _rx(-pose["knee"][k]) @ np.array([0, -shin, 0])
        rt, rk, ra = 0.052 * H * g, 0.034 * H * g**0.7, 0.022 * H * g**0.5
        pad = 1.12 if look["bottom"] == "trousers" else 1.0
        leg_reg = BOTTOM if look["bottom"] == "trousers" else look["legs"]
        thigh_reg = BOTTOM if look["bottom"] == "trousers" else look["legs"]
        _chain(hip, knee, rt * pad, rk * pad, thigh_reg, prims)
        _chain(knee, ankle, rk * pad, ra * pad, leg_reg, prims)
        foot_c = ankle + np.array([0, -0.012 * H, -0.045 * H])
        prims.append(_Prim(foot_c, np.eye(3), np.array([0.03 * H, 0.024 * H, 0.075 * H]), SHOES))
        feet.append(ankle)

    # pelvis, belly, chest (the upper body turns about the waist)
    waist = np.array([0.0, 0.6 * H, 0.0])
    r_up = _ry(pose["twist"]) @ _rx(pose["lean"])

    def up(p: np.ndarray) -> np.ndarray:
        return waist + r_up @ (np.asarray(p, float) - waist)

    pelvis_reg = BOTTOM if look["bottom"] != "dress" else TOP
    prims.append(
        _Prim(
            np.array([0, 0.545 * H, 0.0]),
            np.eye(3),
            np.array([hw + 0.045 * H * g, 0.075 * H, 0.062 * H * g]),
            pelvis_reg,
        )
    )
    prims.append(
        _Prim(
            up([0, 0.625 * H, 0.004 * H * belly]),
            r_up,
            np.array([sw * 0.78 * belly, 0.075 * H, 0.06 * H * g * belly]),
            TOP,
        )
    )
    top_kind = look["top_kind"]
    jw = 1.1 if top_kind in ("jacket", "coat") else 1.0  # tailored tops stand off the body
    chest_r = np.array([sw * 0.92 * jw, 0.1 * H, 0.065 * H * g**0.8 * jw])
    prims.append(_Prim(up([0, 0.72 * H, 0.0]), r_up, chest_r, TOP))
    # bridges: waist (belly-pelvis) and ribs (chest-belly), so the torso has no notches
    prims.append(
        _Prim(
            up([0, 0.585 * H, 0.002 * H]),
            r_up,
            np.array([(sw * 0.78 * belly + hw + 0.045 * H * g) / 2, 0.05 * H, 0.06 * H * g * belly**0.5]),
            TOP if look["bottom"] == "dress" or top_kind in ("jacket", "coat") else pelvis_reg,
        )
    )
    prims.append(
        _Prim(
            up([0, 0.67 * H, 0.002 * H]),
            r_up,
            np.array(
                [(sw * 0.78 * belly + sw * 0.92 * jw) / 2, 0.06 * H, 0.062 * H * g * max(belly, jw) ** 0.8]
            ),
            TOP,
        )
    )
    if female and rng.random() < 0.8:
        bust = rng.uniform(0.8, 1.1)
        for side in (-1.0, 1.0):
            prims.append(
                _Prim(
                    up([side * 0.04 * H, 0.71 * H, -0.018 * H * g]),
                    r_up,
                    np.array([0.038, 0.03, 0.034]) * H * g**0.6 * bust,
                    TOP,
                )
            )
    if top_kind in ("jacket", "coat"):  # the hem over the hips
        prims.append(
            _Prim(
                np.array([0, 0.555 * H, 0.0]),
                np.eye(3),
                np.array([hw + 0.058 * H * g, 0.07 * H, 0.072 * H * g]),
                TOP,
            )
        )
    if top_kind == "coat" and pose["kind"] != "sit":  # a long coat: a gently flaring tube down to the knees
        hem = rng.uniform(0.25, 0.36) * H
        spread = abs(feet[0][0] - feet[1][0]) / 2 + 0.07 * H * g
        n = 12
        for f in np.linspace(0, 1, n):
            y = 0.56 * H + (hem - 0.56 * H) * f
            rx = (hw + 0.06 * H * g) * (1 - f) + max(spread, hw + 0.07 * H * g) * f
            rz = 0.075 * H * g * (1 - f) + 0.09 * H * g * f
            prims.append(
                _Prim(
                    np.array([0, y, 0.004 * H]),
                    np.eye(3),
                    np.array([rx, 2.2 * (0.56 * H - hem) / n, rz]),
                    TOP,
                )
            )
    if look["bottom"] in ("skirt", "dress"):
        hem_y = rng.uniform(0.26, 0.42) * H
        top_y = 0.6 * H if look["bottom"] == "skirt" else 0.56 * H
        spread = max(abs(feet[0][0] - feet[1][0]) / 2, 0.0) + 0.06 * H * g
        reg = BOTTOM if look["bottom"] == "skirt" else TOP
        flare = rng.uniform(1.0, 1.25) if rng.random() < 0.5 else rng.uniform(1.3, 1.7)  # straight / A-line
        n = 12
        for f in np.linspace(0, 1, n):
            y = top_y + (hem_y - top_y) * f
            fl = 1 + (flare - 1) * f**1.5
            rx = ((hw + 0.045 * H * g) * (1 - f) + max(spread, hw + 0.06 * H * g) * f) * fl
            rz = (0.065 * H * g * (1 - f) + 0.085 * H * g * f) * (1 + (fl - 1) * 0.6)
            prims.append(
                _Prim(
                    np.array([0, y, 0.005 * H]), np.eye(3), np.array([rx, 2.5 * (top_y - hem_y) / n, rz]), reg
                )
            )

    # neck and head
    neck_base = up([0, 0.83 * H, 0.005 * H])
    r_head = r_up @ _ry(pose["head_yaw"]) @ _rx(pose["head_pitch"])
    head_c = neck_base + r_up @ np.array([0, 0.1 * H, -0.004 * H])
    _chain(
        neck_base,
        head_c - r_up @ np.array([0, 0.04 * H, 0]),
        0.028 * H * g**0.5,
        0.026 * H * g**0.5,
        SKIN,
        prims,
    )
    head_r = np.array([0.054, 0.066, 0.062]) * H * rng.uniform(0.95, 1.05)
    prims.append(_Prim(head_c, r_head, head_r, HEAD))
    hair = look["hair"]
    if hair != "bald":
        if hair == "crop":
            hr, hairline = head_r * np.array([1.03, 1.03, 1.04]), rng.uniform(0.3, 0.5)
        elif hair == "curly":
            hr, hairline = (
                head_r * rng.uniform(1.18, 1.35) * np.array([1.0, 0.95, 1.0]),
                rng.uniform(0.1, 0.3),
            )
        else:
            hr, hairline = head_r * np.array([1.08, 1.06, 1.08]), rng.uniform(0.2, 0.4)
        lift = 0.01 * H if hair != "curly" else 0.02 * H
        prims.append(_Prim(head_c + r_head @ np.array([0, lift, 0.006 * H]), r_head, hr, HAIR, hairline))
        if hair == "curly":  # volume: curls around the crown and the back
            for _ in range(10):
                a, b = rng.uniform(-1.3, 1.3), rng.uniform(-0.2, 1.2)
                d = np.array(
                    [np.sin(a) * np.cos(b), np.sin(b) * 0.9 + 0.1, np.cos(a) * np.cos(b) * 0.8 + 0.3]
                )
                d /= np.linalg.norm(d)
                c = head_c + r_head @ (d * hr * 0.95 + np.array([0, lift, 0.006 * H]))
                prims.append(_Prim(c, np.eye(3), np.full(3, rng.uniform(0.022, 0.032) * H), HAIR))
        elif hair == "ponytail":
            root = head_c + r_head @ np.array([0, 0.03 * H, 0.065 * H])
            tip = head_c + r_head @ np.array([0, -rng.uniform(0.08, 0.16) * H, 0.1 * H])
            _chain(root, tip, 0.024 * H, 0.012 * H, HAIR, prims)
        if hair == "long":
            hl = rng.uniform(0.1, 0.2) * H
            c = head_c + r_head @ np.array([0, -hl / 2 + 0.02 * H, 0.025 * H])
            prims.append(
                _Prim(c, r_head, np.array([head_r[0] * 1.1, hl / 2 + 0.03 * H, head_r[2] * 0.75]), HAIR, -2.0)
            )
        elif hair == "bun":
            prims.append(
                _Prim(
                    head_c + r_head @ np.array([0, 0.05 * H, 0.05 * H]),
                    r_head,
                    np.full(3, 0.028 * H),
                    HAIR,
                    -2.0,
                )
            )

    # arms
    sh_y = 0.81 * H
    upper, fore = 0.175 * H, 0.155 * H
    for k, side in enumerate((-1.0, 1.0)):
        shoulder = up([side * sw, sh_y, 0.0])
        r_u = r_up @ _rx(pose["sh_flex"][k]) @ _rz(side * pose["sh_abd"][k]) @ _ry(side * pose["sh_rot"][k])
        elbow = shoulder + r_u @ np.array([0, -upper, 0])
        r_f = r_u @ _rx(pose["elbow"][k])
        wrist = elbow + r_f @ np.array([0, -fore, 0])
        ru, re, rw = 0.03 * H * g**0.8, 0.024 * H * g**0.6, 0.018 * H * g**0.4
        sleeve = look["sleeve"]
        pad = (1.12 if sleeve > 0 else 1.0) * (jw if sleeve >= 1 else 1.0)
        # shoulder: the trapezius slope to the neck, a deltoid along the arm (no ball joint)
        prims.append(
            _Prim(up([side * sw * 0.5, sh_y + 0.01 * H, 0.006 * H]), r_up,
                  np.array([sw * 0.55, 0.03 * H, 0.05 * H * g**0.8 * jw]), TOP)
        )  # fmt: skip
        u_dir = elbow - shoulder
        prims.append(
            _Prim(shoulder + u_dir * 0.12, _align(u_dir), np.array([ru * 1.12 * pad, 0.075 * H, ru * 1.1 * pad]),
                  TOP if sleeve > 0.1 else SKIN)
        )  # fmt: skip
        _chain(shoulder, elbow, ru * pad, re * pad, (lambda f, s=sleeve: TOP if f <= s * 2 else SKIN), prims)
        _chain(elbow, wrist, re * pad, rw * pad, (lambda f, s=sleeve: TOP if f <= s * 2 - 1 else SKIN), prims)
        # muscle: a biceps and a forearm swell, where the sleeve does not end on them
        f_dir = wrist - elbow
        if sleeve * 2 >= 0.85 or sleeve * 2 <= 0.1:
            reg = TOP if sleeve * 2 >= 0.85 else SKIN
            prims.append(_Prim(shoulder + u_dir * 0.45, _align(u_dir),
                               np.array([ru * 1.05 * pad, upper * 0.32, ru * 0.98 * pad]), reg))  # fmt: skip
        if sleeve * 2 - 1 >= 0.6 or sleeve * 2 - 1 <= 0.0:
            reg = TOP if sleeve * 2 - 1 >= 0.6 else SKIN
            prims.append(_Prim(elbow + f_dir * 0.3, _align(f_dir),
                               np.array([re * 1.1 * pad, fore * 0.3, re * 1.0 * pad]), reg))  # fmt: skip
        if look["rolled"]:  # a rolled-up cuff where the sleeve ends on the forearm
            prims.append(_Prim(elbow + f_dir * (sleeve * 2 - 1), _align(f_dir),
                               np.array([re * 1.35, 0.018 * H, re * 1.3]), TOP))  # fmt: skip
        hand_dir = r_f @ np.array([0, -1.0, 0])
        hand = wrist + hand_dir * 0.045 * H
        prims.append(_Prim(hand, _align(hand_dir), np.array([0.022, 0.05, 0.012]) * H, SKIN))
        if k == look["held_side"] and look["held"] in ("laptop", "folder", "mug"):
            _held_object(look["held"], hand, hand_dir, r_up, pose["elbow"][k], prims)
    # collar / neckline
    if top_kind in ("shirt", "jacket", "coat", "sweater"):
        reg = INNER if top_kind != "sweater" else TOP
        rn = 0.028 * H * g**0.5
        for a in np.linspace(-np.pi * 0.85, np.pi * 0.85, 9):
            c = up(
                [np.sin(a) * rn * 1.15, 0.832 * H - 0.006 * H * np.cos(a), -np.cos(a) * rn * 1.15 + 0.005 * H]
            )
            prims.append(_Prim(c, np.eye(3), np.full(3, 0.011 * H), reg))
    if look["held"] == "bag" and pose["kind"] != "sit":
        side = 1.0 if look["held_side"] else -1.0
        bag_c = np.array([side * (hw + 0.085 * H * g), rng.uniform(0.45, 0.52) * H, 0.01 * H])
        dims = np.array([0.045, rng.uniform(0.09, 0.13), rng.uniform(0.12, 0.17)])
        prims.append(_Prim(bag_c, _ry(rng.uniform(-0.2, 0.2)), dims, OBJECT, box=True))
        _chain(up([side * sw * 0.85, sh_y + 0.02 * H, 0.0]), bag_c + np.array([0, dims[1], 0]), 0.008, 0.008,
               OBJECT, prims)  # fmt: skip
    look["feet"] = feet
    look["height"] = H
    return prims, look


def _held_object(kind: str, hand, hand_dir, r_up, elbow: float, prims: list[_Prim]) -> None:
    """A laptop, folder or mug in the hand: hanging at the side from a lowered arm, held up in front from a bent
    one."""
    if kind == "mug":
        prims.append(_Prim(hand + hand_dir * 0.03 + r_up[:, 2] * -0.04, r_up, np.array([0.04, 0.05, 0.04]),
                           OBJECT, box=True))  # fmt: skip
        return
    half = np.array([0.012 if kind == "laptop" else 0.006, 0.12, 0.16])
    if elbow < 1.0:  # hanging by the side, gripped at the top edge, thin across the body
        y = hand_dir / np.linalg.norm(hand_dir)
        x = r_up[:, 0] - y * (r_up[:, 0] @ y)
        x /= max(np.linalg.norm(x), 1e-9)
        rot = np.stack([x, y, np.cross(x, y)], axis=1)
        prims.append(_Prim(hand + y * (half[1] - 0.03), rot, half, OBJECT, box=True))
    else:  # held up in front of the chest, flat towards the camera
        rot = r_up @ np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])  # thin axis along body z
        prims.append(_Prim(hand + r_up[:, 2] * -0.04, rot, half[[0, 1, 2]] * [1, 1, 0.9], OBJECT, box=True))


def _appearance(rng: np.random.Generator, female: bool) -> dict:
    """Colours and clothing choices; office-like colours are favoured so the model cannot rely on colour."""

    def cloth() -> np.ndarray:
        i = int(rng.integers(8)) if rng.random() < 0.65 else int(rng.integers(len(_CLOTHES)))
        return np.clip(_CLOTHES[i] * rng.uniform(0.85, 1.15, 3), 0.02, 1.0)

    t = rng.uniform(0, len(_SKIN_TONES) - 1)
    skin = _SKIN_TONES[int(t)] * (1 - t % 1) + _SKIN_TONES[min(int(t) + 1, len(_SKIN_TONES) - 1)] * (t % 1)
    hair_opts = ["short", "long", "bun", "bald", "crop", "ponytail", "curly"]
    hair_p = (
        [0.14, 0.34, 0.12, 0.02, 0.06, 0.2, 0.12] if female else [0.42, 0.04, 0.01, 0.13, 0.3, 0.02, 0.08]
    )
    bottom = rng.choice(["trousers", "skirt", "dress"], p=[0.45, 0.3, 0.25]) if female else "trousers"
    top_kind = str(
        rng.choice(["shirt", "tshirt", "jacket", "sweater", "coat"], p=[0.25, 0.2, 0.25, 0.18, 0.12])
    )
    if bottom == "dress" and top_kind not in ("jacket", "coat"):
        top_kind = "dress"
    sleeve = {
        "shirt": rng.choice([0.5, 1.0, 0.72]),  # short, long, rolled up
        "tshirt": rng.uniform(0.15, 0.35),
        "jacket": 1.0,
        "sweater": 1.0,
        "coat": 1.0,
        "dress": rng.choice([0.0, 0.3, 1.0]),
    }[top_kind]
    rolled = top_kind == "shirt" and sleeve == 0.72

    def distinct(c: np.ndarray) -> np.ndarray:
        """Re-draw clothing colours that read as skin (a beige top on light skin looks topless)."""
        for _ in range(20):
            if np.linalg.norm(c - skin) > 0.28:
                break
            c = cloth()
        return c

    look = {
        "skin": skin * rng.uniform(0.95, 1.05, 3),
        "hair": str(rng.choice(hair_opts, p=hair_p)),
        "hair_color": _HAIR_COLORS[int(rng.integers(len(_HAIR_COLORS)))] * rng.uniform(0.85, 1.15),
        "top_kind": top_kind,
        "top": distinct(cloth()),
        "inner": cloth(),
        "bottom": str(bottom),
        "bottom_color": distinct(cloth()),
        "rolled": rolled,
        "held": str(rng.choice(["none", "laptop", "folder", "mug", "bag"], p=[0.62, 0.1, 0.1, 0.08, 0.1])),
        "held_side": int(rng.integers(2)),
        "object": np.array(
            [
                [0.7, 0.7, 0.72],
                [0.12, 0.12, 0.13],
                [0.35, 0.22, 0.12],
                [0.15, 0.3, 0.6],
                [0.85, 0.2, 0.15],
                [0.9, 0.9, 0.88],
            ][int(rng.integers(6))]
        )
        * rng.uniform(0.85, 1.1),
        "shoes": np.array(_CLOTHES[int(rng.choice([4, 8, 2, 5, 3]))]) * rng.uniform(0.8, 1.1),
        "sleeve": float(sleeve),
        "legs": SKIN if rng.random() < 0.6 else TIGHTS,  # bare legs or tights under a skirt
        "tights": np.array([0.08, 0.07, 0.07]) * rng.uniform(0.8, 3),
        "top_pattern": int(rng.choice([0, 0, 0, 0, 0, 1, 2, 3, 4])),
        "bottom_pattern": int(rng.choice([0] * 9 + [2, 3])),
        "pattern_freq": rng.uniform(12, 45),
        "pattern_color": cloth(),
        "seed": int(rng.integers(1 << 30)),
    }
    if bottom == "dress":
        look["bottom_color"] = look["top"]
        look["bottom_pattern"] = look["top_pattern"]
    return look


def _raster(prims: list[_Prim], scale: float, origin: tuple[float, float], shape: tuple[int, int]):
    """Z-buffer of the primitives on a grid: pixel (i, j) centre is at x = origin[0] + j / scale,
    y = origin[1] - i / scale. Returns z (inf = empty), normal (h, w, 3), prim index (h, w), -1 = empty."""
    h, w = shape
    zbuf = np.full(shape, np.inf)
    nbuf = np.zeros(shape + (3,))
    ibuf = np.full(shape, -1, np.int32)
    x0, y0 = origin
    for k, p in enumerate(prims):
        ex = p.extent()
        j0, j1 = (
            int(np.floor((p.centre[0] - ex[0] - x0) * scale)),
            int(np.ceil((p.centre[0] + ex[0] - x0) * scale)) + 1,
        )
        i0, i1 = (
            int(np.floor((y0 - p.centre[1] - ex[1]) * scale)),
            int(np.ceil((y0 - p.centre[1] + ex[1]) * scale)) + 1,
        )
        j0, j1, i0, i1 = max(j0, 0), min(j1, w), max(i0, 0), min(i1, h)
        if j0 >= j1 or i0 >= i1:
            continue
        xs = x0 + np.arange(j0, j1) / scale - p.centre[0]
        ys = y0 - np.arange(i0, i1) / scale - p.centre[1]
        if p.box:
            a_rows = p.rot / p.radii
            o = xs[None, :, None] * a_rows[0] + ys[:, None, None] * a_rows[1]
            dd = np.where(np.abs(a_rows[2]) < 1e-9, 1e-9, a_rows[2])
            t1, t2 = (-1.0 - o) / dd, (1.0 - o) / dd
            tmin = np.minimum(t1, t2)
            tn, tf = tmin.max(-1), np.maximum(t1, t2).min(-1)
            win = (tn <= tf) & (p.centre[2] + tn < zbuf[i0:i1, j0:j1])
            ii, jj = np.nonzero(win)
            dz = tn
            axis = np.argmax(tmin[ii, jj], axis=-1)
            n = p.rot[:, axis].T * -np.sign(dd[axis])[:, None]
        elif p.radii[0] == p.radii[1] == p.radii[2] and p.hairline is None:
            r = p.radii[0]
            q = r * r - xs[None, :] ** 2 - ys[:, None] ** 2
            dz = -np.sqrt(np.maximum(q, 0.0))
            win = (q > 0) & (p.centre[2] + dz < zbuf[i0:i1, j0:j1])
            ii, jj = np.nonzero(win)
            n = np.stack([xs[jj], ys[ii], dz[ii, jj]], axis=-1) / r
        else:
            a_rows = p.rot / p.radii  # row m = body axis m in local units
            # local unit coords: o' = xs * a_rows[0] + ys * a_rows[1] + (z - cz) * a_rows[2]; ray origin z = cz
            o = xs[None, :, None] * a_rows[0] + ys[:, None, None] * a_rows[1]
            dd = a_rows[2]
            aa = float(dd @ dd)
            bb = o @ dd
            cc = (o * o).sum(-1) - 1.0
            disc = bb * bb - aa * cc
            ok = disc > 0
            t = (-bb - np.sqrt(np.where(ok, disc, 0.0))) / aa
            loc = o + t[..., None] * dd
            if p.hairline is not None:
                ok &= (loc[..., 1] > p.hairline) | ((loc[..., 2] > 0.1) & (loc[..., 1] > -0.45))
            win = ok & (p.centre[2] + t < zbuf[i0:i1, j0:j1])
            ii, jj = np.nonzero(win)
            dz = t
            n = (loc[ii, jj] / p.radii) @ p.rot.T
            n /= np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-9)
        zbuf[i0 + ii, j0 + jj] = p.centre[2] + dz[ii, jj]
        nbuf[i0 + ii, j0 + jj] = n
        ibuf[i0 + ii, j0 + jj] = k
    return zbuf, nbuf, ibuf


def _smooth_normals(nbuf: np.ndarray, ibuf: np.ndarray, regions: np.ndarray, sigma: float) -> np.ndarray:
    """Blur the normals of the soft body (not of boxes) so that the spheres of a chain and the seams between
    ellipsoids shade as one smooth surface."""
    soft = (ibuf >= 0) & (regions[np.maximum(ibuf, 0)] != OBJECT)
    if sigma < 0.5 or not soft.any():
        return nbuf
    nb = cv2.GaussianBlur((nbuf * soft[..., None]).astype(np.float32), (0, 0), sigma)
    nb /= np.maximum(np.linalg.norm(nb, axis=-1, keepdims=True), 1e-6)
    return np.where(soft[..., None], nb, nbuf)


def _pattern(kind: int, bx: np.ndarray, by: np.ndarray, freq: float, seed: int) -> np.ndarray:
    """Weight in [0, 1] of the pattern colour at body points (metres): 0 plain, 1 horizontal stripes, 2 vertical
    stripes, 3 checks, 4 noisy print."""
    if kind == 1:
        return (np.sin(by * freq * 2 * np.pi) > 0.3).astype(float)
    if kind == 2:
        return (np.sin(bx * freq * 2 * np.pi) > 0.5).astype(float)
    if kind == 3:
        return 0.5 * ((np.sin(bx * freq * np.pi) > 0.6).astype(float) + (np.sin(by * freq * np.pi) > 0.6))
    if kind == 4:
        return (tx.value_noise(bx * freq, by * freq, seed) > 0.6).astype(float)
    return np.zeros_like(bx)


def _colorise(prims, look, zbuf, nbuf, ibuf, scale, origin, yaw, rng) -> np.ndarray:
    """Shaded colour (h, w, 3) in [0, 1] of the rasterised body."""
    h, w = zbuf.shape
    on = ibuf >= 0
    jj, ii = np.meshgrid(np.arange(w), np.arange(h))
    x = origin[0] + jj[on] / scale
    y = origin[1] - ii[on] / scale
    z = zbuf[on]
    # body-frame coordinates (undo the yaw) for patterns that follow the body
    c, s = np.cos(-yaw), np.sin(-yaw)
    bx, bz = c * x + s * z, -s * x + c * z
    regions = np.array([p.region for p in prims])[ibuf[on]]
    col = np.zeros((on.sum(), 3))
    col[:] = look["skin"]
    col[regions == HAIR] = look["hair_color"]
    col[regions == SHOES] = look["shoes"]
    col[regions == TIGHTS] = look["tights"]
    col[regions == INNER] = look["inner"]
    col[regions == OBJECT] = look["object"]
    seed = look["seed"]
    for reg, base, kind in (
        (TOP, look["top"], look["top_pattern"]),
        (BOTTOM, look["bottom_color"], look["bottom_pattern"]),
    ):
        sel = regions == reg
        if not sel.any():
            continue
        wgt = _pattern(kind, bx[sel], y[sel], look["pattern_freq"], seed)[:, None]
        col[sel] = base * (1 - wgt) + look["pattern_color"] * wgt
    hh = look["height"]
    if look["top_kind"] in ("jacket", "coat"):  # open front: a V of the shirt between the lapels
        v = np.clip((y - 0.6 * hh) / (0.22 * hh), 0, 1)
        sel = (
            (regions == TOP)
            & (np.abs(bx) < (0.01 + 0.035 * v) * hh)
            & (bz < 0)
            & (y > 0.6 * hh)
            & (y < 0.83 * hh)
        )
        col[sel] = look["inner"]
        lapel = (regions == TOP) & (np.abs(np.abs(bx) - (0.01 + 0.035 * v) * hh) < 0.004 * hh) & (bz < 0)
        col[lapel & (y > 0.6 * hh) & (y < 0.83 * hh)] *= 0.6
        if look["top_kind"] == "coat":  # the closed part: a button line down the front
            sel = (regions == TOP) & (np.abs(bx) < 0.003 * hh) & (bz < 0) & (y < 0.6 * hh)
            col[sel] *= 0.55
    # face: eyes, brows, mouth on the head's local frame
    head = regions == HEAD
    if head.any():
        hp = prims[int(np.flatnonzero([p.region == HEAD for p in prims])[0])]
        loc = ((np.stack([x[head], y[head], z[head]], 1) - hp.centre) @ hp.rot) / hp.radii
        front = loc[:, 2] < -0.5
        eyes = front & (np.abs(np.abs(loc[:, 0]) - 0.36) < 0.12) & (np.abs(loc[:, 1] - 0.08) < 0.07)
        brows = front & (np.abs(np.abs(loc[:, 0]) - 0.36) < 0.17) & (np.abs(loc[:, 1] - 0.25) < 0.04)
        mouth = front & (np.abs(loc[:, 0]) < 0.22) & (np.abs(loc[:, 1] + 0.45) < 0.04)
        hc = col[head]
        hc[eyes] = [0.12, 0.1, 0.09]
        hc[brows] = look["hair_color"] * 0.8
        hc[mouth] = look["skin"] * [0.7, 0.45, 0.45]
        col[head] = hc
    # cloth folds and skin texture
    noise = tx.fbm(bx * 3 + bz, y * 3, seed + 5, 6.0, 2) - 0.5
    clothes = (regions == TOP) | (regions == BOTTOM) | (regions == INNER)
    col *= (1 + np.where(clothes, 0.22, 0.06) * noise)[:, None]
    hair = regions == HAIR
    fu, fv = (160, 160) if look["hair"] == "curly" else (300, 60)  # curls: blotchy; straight: streaks
    col[hair] *= (0.75 + 0.5 * tx.value_noise(bx[hair] * fu, y[hair] * fv, seed + 7))[:, None]
    # lighting: key light from the front/top/side, ambient, a touch of rim
    n = nbuf[on]
    az, el = rng.uniform(-1.2, 1.2), rng.uniform(0.3, 1.1)
    key = np.array([np.sin(az) * np.cos(el), np.sin(el), -np.cos(az) * np.cos(el)])
    amb = rng.uniform(0.35, 0.6)
    diff = np.clip(n @ key, 0, None)
    sky = 0.5 + 0.5 * n[:, 1]
    shade = amb * (0.75 + 0.25 * sky) + (1.05 - amb) * diff
    out = np.zeros((h, w, 3))
    out[on] = np.clip(col * shade[:, None], 0, 1)
    return out


def render_person(seed: int, height_px: int = 256) -> Foreground:
    """Render a random person for ``seed`` as an upright sprite with per-pixel depth.

    Args:
        seed: any int; the same seed gives the same arrays.
        height_px: the figure's height in output pixels (ground to its highest point).

    Returns:
        Foreground with rgba (h, w, 4) uint8 straight alpha with anti-aliased edges, anchor (x, y) = ground point
        between the feet, depth_offset (h, w) float32 metres relative to the vertical plane through the anchor
        (positive = farther; 0 outside the alpha; within +-0.5), height_m = the posed figure's height (ground to
        its highest point; the stature for upright poses with arms down), px_per_m = height_px / height_m.
    """
    if height_px < 8:
        raise ValueError(f"height_px must be >= 8, got {height_px}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xB0D1]))
    prims, look = _build(rng)
    yaw = (
        rng.uniform(-np.pi / 3, np.pi / 3)
        if rng.random() < 0.85
        else rng.choice([-1, 1]) * rng.uniform(1.3, 1.75)
    )
    feet = look["feet"]
    anchor3 = (feet[0] + feet[1]) / 2
    r_yaw = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
    lows, highs = [], []
    for p in prims:
        p.centre = anchor3 + r_yaw @ (p.centre - anchor3)
        p.rot = r_yaw @ p.rot
        ex = p.extent()
        lows.append(p.centre - ex)
        highs.append(p.centre + ex)
    lo, hi = np.min(lows, axis=0), np.max(highs, axis=0)
    for p in prims:  # stand on the ground; the anchor plane is z = 0
        p.centre = p.centre - np.array([anchor3[0], lo[1], anchor3[2]])
    lo, hi = lo - [anchor3[0], lo[1], 0], hi - [anchor3[0], lo[1], 0]
    height_m = float(hi[1])
    ppm = height_px / height_m
    # output grid: row of the ground = _MARGIN + height_px, anchor column from the left edge
    out_h = int(np.ceil(height_px)) + 2 * _MARGIN + 1
    left, right = lo[0] - _MARGIN / ppm, hi[0] + _MARGIN / ppm
    out_w = int(np.ceil((right - left) * ppm)) + 1
    ground_row = _MARGIN + height_px
    s = _SS
    scale = ppm * s
    # sub-pixel (a, b) of output pixel (i, j) is at row i*s + a, centre offset (a + 0.5) / s - 0.5
    origin = (left - (s - 1) / 2 / scale, (ground_row + (s - 1) / 2 / s) / ppm)
    zbuf, nbuf, ibuf = _raster(prims, scale, origin, (out_h * s, out_w * s))
    nbuf = _smooth_normals(nbuf, ibuf, np.array([p.region for p in prims]), 0.012 * scale)
    color = _colorise(prims, look, zbuf, nbuf, ibuf, scale, origin, yaw, rng)
    cover = (ibuf >= 0).astype(np.float64)
    alpha = cover.reshape(out_h, s, out_w, s).mean(axis=(1, 3))
    premul = (color * cover[..., None]).reshape(out_h, s, out_w, s, 3).sum(axis=(1, 3))
    rgb = premul / np.maximum(cover.reshape(out_h, s, out_w, s).sum(axis=(1, 3)), 1e-9)[..., None]
    zc = zbuf[s // 2 :: s, s // 2 :: s]  # the centre sub-sample
    zmin = zbuf.reshape(out_h, s, out_w, s).min(axis=(1, 3))
    depth = np.where(np.isfinite(zc), zc, zmin)
    depth = np.where(alpha > 0, np.clip(depth, -MAX_DEPTH_OFFSET_M, MAX_DEPTH_OFFSET_M), 0.0).astype(
        np.float32
    )
    rgba = np.concatenate(
        [np.clip(rgb * 255 + 0.5, 0, 255), np.clip(alpha * 255 + 0.5, 0, 255)[..., None]], axis=-1
    )
    rgba = rgba.astype(np.uint8)
    depth[rgba[..., 3] == 0] = 0.0
    anchor = (float(-left * ppm), float(ground_row))
    return Foreground(rgba=rgba, anchor=anchor, depth_offset=depth, height_m=height_m, px_per_m=float(ppm))
