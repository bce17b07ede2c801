"""Deterministic synthetic COCO-format instance-segmentation data set.

Each image shows 1-5 filled geometric shapes on a textured background.
The class is carried by the shape only (every object gets a random colour),
objects vary in size, position and rotation, and later objects occlude
earlier ones: an annotation's mask is the *visible* part of its object.

In the ``'context'`` mode an object's class is decided by context far from
it: every image belongs to one of two scenes (``CONTEXT_SCENES``), shown
only by a patterned frame along the image border (stripes or a
checkerboard), and objects keep a gap to that frame. The same shape is
class ``<shape>_striped`` in a striped scene and ``<shape>_checkered`` in a
checkered one, so the object itself and its neighbourhood do not tell the
two classes apart; only the far-away frame does. The ``'standard'`` mode's
output is unchanged by the existence of this mode.

The module depends on numpy, cv2 and pycocotools only, so importing it is
cheap (no torch, no mmdet).
"""
from __future__ import annotations
import json
import os
import re
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
from pycocotools import mask as mask_utils

SYNTHETIC_CLASSES: Tuple[str, ...] = ('circle', 'square', 'triangle', 'star',
                                      'cross')

#: Generator modes (see the module docstring).
MODES: Tuple[str, ...] = ('standard', 'context')
#: Shapes and scenes of the context mode; class ``i * 2 + s`` (0-based) is
#: shape ``i`` in scene ``s``.
CONTEXT_SHAPES: Tuple[str, ...] = ('circle', 'square', 'triangle')
CONTEXT_SCENES: Tuple[str, ...] = ('striped', 'checkered')
CONTEXT_CLASSES: Tuple[str, ...] = tuple(f'{shape}_{scene}'
                                         for shape in CONTEXT_SHAPES
                                         for scene in CONTEXT_SCENES)
FRAME_FRACTION = 0.08  # width of the scene frame / image side
FRAME_GAP_FRACTION = 0.06  # least gap between frame and objects / side
FRAME_PERIOD_FRACTION = 1 / 16  # stripe / checker period / image side

# Bump whenever the rendered output changes, so that stale data sets found
# on disk are regenerated instead of silently reused.
GENERATOR_VERSION = 1

# Geometry at the reference resolution; scaled linearly with image_size.
REFERENCE_SIZE = 256
MIN_OBJECT_SIZE = 24.0  # px, diameter of the shape's circumscribed circle
MAX_OBJECT_SIZE = 110.0
MIN_VISIBLE_AREA = 150  # px at the reference resolution (scaled by area)
MIN_VISIBLE_FRACTION = 0.35  # of the object's full (unoccluded) area
MAX_OBJECTS_PER_IMAGE = 5
PLACEMENT_TRIES = 30  # attempts to place one object before giving it up
MIN_COLOUR_DISTANCE = 100.0  # RGB Euclidean distance to what lies beneath
# A new object may lie at most this fraction inside an earlier one, so that
# occlusions bite into outlines instead of punching holes into objects.
MAX_NESTED_FRACTION = 0.6

SPLIT_SEED_OFFSETS = {'train': 0, 'val': 1}
MARKER_NAME = '.complete'
POLY_SHIFT = 4  # cv2 fixed-point bits for sub-pixel polygon vertices
_IMAGE_NAME_RE = re.compile(r'^\d{6,}\.png$')


class SyntheticInstance:
    """One object of a rendered image.

    Args:
        category_id: 1-based index into ``SYNTHETIC_CLASSES``.
        full_mask: (H, W) bool, the whole unoccluded shape.
        visible_mask: (H, W) bool, the part not covered by later objects.
    """

    def __init__(self, category_id: int, full_mask: np.ndarray,
                 visible_mask: np.ndarray) -> None:
        self.category_id = category_id
        self.full_mask = full_mask
        self.visible_mask = visible_mask
        self.full_area = int(full_mask.sum())

    @property
    def visible_area(self) -> int:
        """Number of visible pixels."""
        return int(self.visible_mask.sum())


# --------------------------------------------------------------------------
# Shape geometry
# --------------------------------------------------------------------------
def _regular_polygon(num_vertices: int,
                     radius: float,
                     start_angle: float = -np.pi / 2) -> np.ndarray:
    """Vertices of a regular polygon centred on the origin.

    Args:
        num_vertices: Number of corners.
        radius: Circumradius.
        start_angle: Angle of the first vertex in radians.

    Returns:
        (num_vertices, 2) float64 array of (x, y).
    """
    angles = start_angle + 2 * np.pi * np.arange(num_vertices) / num_vertices
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _star(radius: float,
          inner_ratio: float = 0.45,
          num_points: int = 5) -> np.ndarray:
    """Vertices of a star with ``num_points`` tips, (2*num_points, 2)."""
    outer = _regular_polygon(num_points, radius)  # (P, 2)
    inner = _regular_polygon(num_points, radius * inner_ratio,
                             -np.pi / 2 + np.pi / num_points)  # (P, 2)
    return np.stack([outer, inner], axis=1).reshape(-1, 2)  # (2P, 2)


def _cross(radius: float, arm_ratio: float = 0.32) -> np.ndarray:
    """Vertices of a plus sign whose arm tips touch ``radius``, (12, 2)."""
    h = radius * arm_ratio  # half-width of an arm
    a = np.sqrt(radius**2 - h**2)  # arm length so tip corners lie on radius
    return np.array([[-h, -a], [h, -a], [h, -h], [a, -h], [a, h], [h, h],
                     [h, a], [-h, a], [-h, h], [-a, h], [-a, -h], [-h, -h]])


def shape_polygon(name: str, radius: float,
                  rng: np.random.Generator) -> np.ndarray:
    """Unrotated outline of a shape centred on the origin.

    Args:
        name: One of ``SYNTHETIC_CLASSES``.
        radius: Circumradius of the shape in pixels.
        rng: Source of the small per-object shape jitter.

    Returns:
        (N, 2) float64 array of (x, y) vertices.
    """
    if name == 'circle':
        return _regular_polygon(72, radius)
    if name == 'square':
        return _regular_polygon(4, radius, np.pi / 4)
    if name == 'triangle':
        return _regular_polygon(3, radius)
    if name == 'star':
        return _star(radius, inner_ratio=rng.uniform(0.4, 0.5))
    if name == 'cross':
        return _cross(radius, arm_ratio=rng.uniform(0.28, 0.36))
    raise ValueError(f'unknown shape {name!r}; expected one of '
                     f'{SYNTHETIC_CLASSES}')


def _rasterize(vertices: np.ndarray, image_size: int) -> np.ndarray:
    """Fill a polygon into a binary mask (no anti-aliasing).

    Args:
        vertices: (N, 2) float (x, y) in pixel coordinates.
        image_size: Side of the square output.

    Returns:
        (image_size, image_size) bool mask.
    """
    mask = np.zeros((image_size, image_size), np.uint8)  # (H, W)
    points = np.round(vertices * (1 << POLY_SHIFT)).astype(np.int32)  # (N, 2)
    cv2.fillPoly(mask, [points], 1, lineType=cv2.LINE_8, shift=POLY_SHIFT)
    return mask.astype(bool)


def _sample_object_mask(shape: str,
                        image_size: int,
                        rng: np.random.Generator,
                        margin: int = 0) -> np.ndarray:
    """Draw one randomly sized, placed and rotated shape.

    Args:
        shape: One of ``SYNTHETIC_CLASSES``.
        image_size: Side of the square image.
        rng: Random generator.
        margin: Pixels along every border the shape keeps clear of.

    Returns:
        (H, W) bool mask of the full shape, lying inside the image.
    """
    scale = image_size / REFERENCE_SIZE
    diameter = np.exp(
        rng.uniform(
            np.log(MIN_OBJECT_SIZE * scale), np.log(MAX_OBJECT_SIZE * scale)))
    radius = diameter / 2
    outline = shape_polygon(shape, radius, rng)  # (N, 2)
    angle = rng.uniform(0, 2 * np.pi)
    rotation = np.array([[np.cos(angle), -np.sin(angle)],
                         [np.sin(angle), np.cos(angle)]])  # (2, 2)
    # The circumscribed circle stays inside the image whatever the rotation.
    centre = rng.uniform(
        radius + 1 + margin, image_size - radius - 2 - margin, size=2)  # (2,)
    return _rasterize(outline @ rotation.T + centre, image_size)


# --------------------------------------------------------------------------
# Appearance
# --------------------------------------------------------------------------
def _background(image_size: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth colour gradients with faint lines and blobs.

    Args:
        image_size: Side of the square image.
        rng: Random generator.

    Returns:
        (H, W, 3) float32 RGB image in [0, 255].
    """
    coarse = rng.uniform(50, 205, size=(3, 3, 3)).astype(np.float32)
    canvas = cv2.resize(
        coarse, (image_size, image_size),
        interpolation=cv2.INTER_CUBIC)  # (H, W, 3)
    # A few faint clutter strokes (clearly weaker than real objects).
    clutter = canvas.copy()  # (H, W, 3)
    for _ in range(int(rng.integers(1, 4))):
        p0, p1 = rng.uniform(0, image_size, size=(2, 2)).astype(int)
        colour = rng.uniform(0, 255, size=3).tolist()
        cv2.line(
            clutter,
            tuple(map(int, p0)),
            tuple(map(int, p1)),
            colour,
            thickness=int(rng.integers(1, 4)),
            lineType=cv2.LINE_AA)
    for _ in range(int(rng.integers(1, 4))):
        centre = tuple(int(v) for v in rng.uniform(0, image_size, size=2))
        axes = tuple(int(v) for v in rng.uniform(5, image_size / 5, size=2))
        colour = rng.uniform(0, 255, size=3).tolist()
        cv2.ellipse(
            clutter,
            centre,
            axes,
            float(rng.uniform(0, 180)),
            0,
            360,
            colour,
            thickness=-1,
            lineType=cv2.LINE_AA)
    alpha = rng.uniform(0.12, 0.25)
    return (1 - alpha) * canvas + alpha * clutter  # (H, W, 3)


def _pick_colour(beneath: Sequence[np.ndarray],
                 rng: np.random.Generator) -> np.ndarray:
    """Random RGB colour that stands out from everything it is drawn over.

    Args:
        beneath: (3,) mean colours of the background and of each earlier
            object that the new object overlaps.
        rng: Random generator.

    Returns:
        (3,) float32 RGB colour.
    """
    best, best_distance = None, -1.0
    for _ in range(50):
        colour = rng.uniform(0, 255, size=3)  # (3,)
        distance = min(float(np.linalg.norm(colour - ref)) for ref in beneath)
        if distance >= MIN_COLOUR_DISTANCE:
            return colour.astype(np.float32)
        if distance > best_distance:
            best, best_distance = colour, distance
    return best.astype(np.float32)


def _shaded_fill(mask: np.ndarray, colour: np.ndarray,
                 rng: np.random.Generator) -> np.ndarray:
    """Object colour with a gentle linear shading across its extent.

    Args:
        mask: (H, W) bool full object mask.
        colour: (3,) base RGB colour.
        rng: Random generator.

    Returns:
        (K, 3) float32 colours of the K pixels where ``mask`` is set.
    """
    ys, xs = np.nonzero(mask)  # (K,), (K,)
    direction = rng.normal(size=2)
    direction /= np.linalg.norm(direction) + 1e-12
    proj = (xs - xs.mean()) * direction[0] + (ys - ys.mean()) * direction[1]
    proj /= np.abs(proj).max() + 1e-6  # (K,) in [-1, 1]
    gain = 1.0 + rng.uniform(0.05, 0.15) * proj  # (K,)
    return (gain[:, None] * colour[None, :]).astype(np.float32)  # (K, 3)


def _draw_scene_frame(canvas: np.ndarray, scene: int,
                      rng: np.random.Generator) -> int:
    """Paint the context mode's scene frame along the border, in place.

    Scene 0 (``'striped'``): stripes parallel to each border; scene 1
    (``'checkered'``): a checkerboard. Two random, clearly different
    colours.

    Args:
        canvas: (H, W, 3) float32 background, modified in place.
        scene: Index into ``CONTEXT_SCENES``.
        rng: Random generator.

    Returns:
        Pixels along each border that objects must keep clear of (frame
        plus gap).
    """
    size = canvas.shape[0]
    width = max(2, int(round(FRAME_FRACTION * size)))
    period = max(2, int(round(FRAME_PERIOD_FRACTION * size)))
    dark = rng.uniform(0, 90, size=3).astype(np.float32)
    light = rng.uniform(165, 255, size=3).astype(np.float32)
    ys, xs = np.mgrid[0:size, 0:size]  # (H, W) each
    depth = np.minimum.reduce([ys, xs, size - 1 - ys, size - 1 - xs])
    frame = depth < width  # (H, W)
    if scene == 0:  # stripes running along the nearest border
        on = (depth // (period // 2 or 1)) % 2 == 0
    else:
        on = ((ys // period) + (xs // period)) % 2 == 0
    canvas[frame & on] = light
    canvas[frame & ~on] = dark
    return width + max(1, int(round(FRAME_GAP_FRACTION * size)))


# --------------------------------------------------------------------------
# One image
# --------------------------------------------------------------------------
def _keeps_enough(instance: SyntheticInstance, visible: np.ndarray,
                  min_area: int) -> bool:
    """Whether a (possibly reduced) visible mask is still worth labelling."""
    area = int(visible.sum())
    return (area >= min_area
            and area >= MIN_VISIBLE_FRACTION * instance.full_area)


def _placement_ok(full: np.ndarray, instances: Sequence[SyntheticInstance],
                  min_area: int) -> bool:
    """Whether a new object may be drawn over the earlier ``instances``.

    Args:
        full: (H, W) bool mask of the candidate object.
        instances: Earlier objects with their current visible masks.
        min_area: Smallest visible area worth labelling, in pixels.
    """
    area = int(full.sum())
    if area < min_area:
        return False
    for inst in instances:
        if (full & inst.full_mask).sum() > MAX_NESTED_FRACTION * area:
            return False
        if not _keeps_enough(inst, inst.visible_mask & ~full, min_area):
            return False
    return True


def render_image(
        image_size: int, rng: np.random.Generator
) -> Tuple[np.ndarray, List[SyntheticInstance]]:
    """Render one image of the standard mode (see :func:`render_scene`).

    Returns:
        image: (H, W, 3) uint8 RGB.
        instances: Labelled objects, in drawing order.
    """
    image, instances, _ = render_scene(image_size, rng)
    return image, instances


def render_scene(
    image_size: int,
    rng: np.random.Generator,
    mode: str = 'standard'
) -> Tuple[np.ndarray, List[SyntheticInstance], Optional[int]]:
    """Render one image and its instances.

    Objects are drawn in order; each new object hides the part of earlier
    ones it covers. A placement that would leave an earlier object with
    less than ``MIN_VISIBLE_FRACTION`` of its area or ``MIN_VISIBLE_AREA``
    pixels, or that would sit mostly inside an earlier object, is rejected
    and re-sampled, so no unlabelled fragments remain.

    In the ``'context'`` mode the scene is drawn first (one draw), its
    frame painted over the background, objects keep ``margin`` pixels off
    every border, and each object's class is its shape in that scene.

    Args:
        image_size: Side of the square image.
        rng: Random generator (the only source of randomness).
        mode: One of ``MODES``.

    Returns:
        image: (H, W, 3) uint8 RGB.
        instances: Labelled objects, in drawing order.
        scene: Index into ``CONTEXT_SCENES`` (None in the standard mode).
    """
    min_area = max(
        1, int(round(MIN_VISIBLE_AREA * (image_size / REFERENCE_SIZE)**2)))
    background = _background(image_size, rng)  # (H, W, 3)
    scene, margin, shapes = None, 0, SYNTHETIC_CLASSES
    if mode == 'context':
        scene = int(rng.integers(len(CONTEXT_SCENES)))
        margin = _draw_scene_frame(background, scene, rng)
        shapes = CONTEXT_SHAPES
    elif mode != 'standard':
        raise ValueError(f'mode={mode!r}: expected one of {MODES}')
    canvas = background.copy()  # (H, W, 3)
    instances: List[SyntheticInstance] = []
    colours: List[np.ndarray] = []
    num_objects = int(rng.integers(1, MAX_OBJECTS_PER_IMAGE + 1))
    for _ in range(num_objects):
        shape_id = int(rng.integers(1, len(shapes) + 1))
        category_id = (
            shape_id if scene is None else
            (shape_id - 1) * len(CONTEXT_SCENES) + scene + 1)
        for _ in range(PLACEMENT_TRIES):
            full = _sample_object_mask(shapes[shape_id - 1], image_size, rng,
                                       margin)  # (H, W)
            if _placement_ok(full, instances, min_area):
                break
        else:
            continue  # no acceptable placement: skip this object
        beneath = [background[full].mean(axis=0)]  # list of (3,)
        beneath += [
            colour for inst, colour in zip(instances, colours)
            if (inst.visible_mask & full).any()
        ]
        colour = _pick_colour(beneath, rng)
        canvas[full] = _shaded_fill(full, colour, rng)  # (K, 3)
        for inst in instances:
            inst.visible_mask = inst.visible_mask & ~full
        instances.append(SyntheticInstance(category_id, full, full.copy()))
        colours.append(colour)
    noise = rng.normal(0, 4.0, size=canvas.shape).astype(np.float32)
    image = np.clip(np.rint(canvas + noise), 0, 255).astype(np.uint8)
    # Safety net; placement rejection above normally makes this a no-op.
    instances = [
        inst for inst in instances
        if _keeps_enough(inst, inst.visible_mask, min_area)
    ]
    return image, instances, scene  # (H, W, 3) uint8


def classes_of(mode: str) -> Tuple[str, ...]:
    """Class names of a generator mode, in category-id order.

    Args:
        mode: One of ``MODES``.

    Raises:
        ValueError: Unknown ``mode`` (named with the allowed ones).
    """
    if mode not in MODES:
        raise ValueError(f'mode={mode!r}: expected one of {MODES}')
    return SYNTHETIC_CLASSES if mode == 'standard' else CONTEXT_CLASSES


# --------------------------------------------------------------------------
# COCO writing
# --------------------------------------------------------------------------
def mask_to_annotation(mask: np.ndarray) -> Dict[str, Any]:
    """COCO fields (bbox, area, RLE segmentation) of a binary mask.

    Args:
        mask: (H, W) bool, non-empty.

    Returns:
        Dict with ``bbox`` [x, y, w, h] (tight box of the mask), ``area``
        (pixel count) and ``segmentation`` (compressed RLE, str counts).
    """
    ys, xs = np.nonzero(mask)  # (K,), (K,)
    x0, y0 = int(xs.min()), int(ys.min())
    bbox = [x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1]
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle['counts'] = rle['counts'].decode('ascii')
    return dict(bbox=bbox, area=int(mask.sum()), segmentation=rle)


def _split_seed(seed: int, split: str) -> List[int]:
    """Entropy of a split; image i is drawn from ``[*_split_seed, i]``."""
    return [seed, SPLIT_SEED_OFFSETS[split]]


def _write_json(path: Path, content: Dict[str, Any]) -> None:
    """Write JSON through a temporary file so readers never see half."""
    tmp = path.with_name(path.name + '.tmp')
    tmp.write_text(json.dumps(content, separators=(',', ':')))
    os.replace(tmp, path)


def generate_split(
        split: str,
        image_dir: Union[str, Path],
        ann_file: Union[str, Path],
        num_images: int,
        image_size: int,
        seed: int,
        mode: str = 'standard',
        progress: Optional[Callable[[], None]] = None) -> Dict[str, int]:
    """Render one split: PNGs into ``image_dir`` and its COCO JSON.

    Args:
        split: 'train' or 'val' (selects the derived seed).
        image_dir: Folder receiving ``000000.png`` ...
        ann_file: Path of the COCO annotation file.
        num_images: Number of images.
        image_size: Side of the square images.
        seed: Base seed of the whole data set.
        mode: One of ``MODES``; the context mode records each image's
            ``scene`` (a name of ``CONTEXT_SCENES``) in its image entry.
        progress: Called after each image (e.g. a progress bar's update).

    Returns:
        Dict with ``num_images`` and ``num_annotations``.
    """
    classes = classes_of(mode)
    image_dir, ann_file = Path(image_dir), Path(ann_file)
    image_dir.mkdir(parents=True, exist_ok=True)
    ann_file.parent.mkdir(parents=True, exist_ok=True)
    for stale in image_dir.iterdir():  # leftovers of a larger earlier run
        if _IMAGE_NAME_RE.match(stale.name):
            stale.unlink()
    images, annotations = [], []
    for index in range(num_images):
        rng = np.random.default_rng(_split_seed(seed, split) + [index])
        image, instances, scene = render_scene(image_size, rng,
                                               mode)  # (H, W, 3) RGB
        file_name = f'{index:06d}.png'
        if not cv2.imwrite(
                str(image_dir / file_name),
                cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
            raise OSError(f'cv2 could not write {image_dir / file_name}')
        image_id = index + 1
        images.append(
            dict(
                id=image_id,
                file_name=file_name,
                width=image_size,
                height=image_size))
        if scene is not None:
            images[-1]['scene'] = CONTEXT_SCENES[scene]
        for inst in instances:
            annotations.append(
                dict(
                    id=len(annotations) + 1,
                    image_id=image_id,
                    category_id=inst.category_id,
                    iscrowd=0,
                    **mask_to_annotation(inst.visible_mask)))
        if progress is not None:
            progress()
    coco = dict(
        info=dict(
            description=f'mmgc synthetic shapes ({split})' +
            ('' if mode == 'standard' else f', {mode} mode'),
            version=str(GENERATOR_VERSION),
            year=2024,
            contributor='mmgc',
            url='',
            date_created=''),
        licenses=[],
        images=images,
        annotations=annotations,
        categories=[
            dict(id=i + 1, name=name, supercategory='shape')
            for i, name in enumerate(classes)
        ])
    _write_json(ann_file, coco)
    return dict(num_images=len(images), num_annotations=len(annotations))


def _check_positive(name: str, value: Any, minimum: int = 1) -> None:
    """Raise ValueError unless ``value`` is an int >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
            or value < minimum:
        raise ValueError(f'{name} must be an integer >= {minimum}, '
                         f'got {value!r}')


def _read_marker(marker: Path) -> Optional[Dict[str, Any]]:
    """Content of the completion marker, or None if absent or unreadable."""
    try:
        content = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    return content if isinstance(content, dict) else None


def generate_synthetic_coco(
        out_dir: Union[str, Path],
        num_train: int = 600,
        num_val: int = 100,
        image_size: int = 256,
        seed: int = 0,
        overwrite: bool = False,
        mode: str = 'standard',
        progress: Optional[Callable[[], None]] = None) -> Dict[str, Any]:
    """Generate (or reuse) the synthetic shapes data set.

    Layout: ``out_dir/{train,val}/NNNNNN.png`` and
    ``out_dir/annotations/instances_{train,val}.json``. Output is a pure
    function of the arguments. A finished run leaves ``out_dir/.complete``
    recording its parameters; a later call with the same parameters
    returns at once unless ``overwrite``.

    Args:
        out_dir: Root folder of the data set.
        num_train: Number of training images.
        num_val: Number of validation images.
        image_size: Side of the square images in pixels (>= 64).
        seed: Base seed (>= 0); train and val use seeds derived from it.
        overwrite: Regenerate even when a matching data set exists.
        mode: ``'standard'`` (class = shape) or ``'context'`` (class =
            shape in the scene shown by a far-away frame; see the module
            docstring).
        progress: Called after each image written (not when reused).

    Returns:
        Dict with ``out_dir``, ``train_ann_file``, ``val_ann_file``,
        ``train_img_dir``, ``val_img_dir``, per-split image/annotation
        counts, ``classes`` and ``generated`` (False when reused).
    """
    _check_positive('num_train', num_train)
    _check_positive('num_val', num_val)
    _check_positive('image_size', image_size, minimum=64)
    _check_positive('seed', seed, minimum=0)
    classes = classes_of(mode)
    out_dir = Path(out_dir)
    paths = dict(
        train_img_dir=out_dir / 'train',
        val_img_dir=out_dir / 'val',
        train_ann_file=out_dir / 'annotations' / 'instances_train.json',
        val_ann_file=out_dir / 'annotations' / 'instances_val.json')
    params = dict(
        num_train=int(num_train),
        num_val=int(num_val),
        image_size=int(image_size),
        seed=int(seed),
        version=GENERATOR_VERSION)
    if mode != 'standard':  # standard markers stay as they were
        params['mode'] = mode
    marker = out_dir / MARKER_NAME
    summary: Dict[str, Any] = dict(
        out_dir=str(out_dir),
        classes=classes,
        **{
            k: str(v)
            for k, v in paths.items()
        })

    recorded = _read_marker(marker)
    if (not overwrite and recorded is not None
            and recorded.get('params') == params
            and paths['train_ann_file'].is_file()
            and paths['val_ann_file'].is_file()):
        summary.update(recorded.get('counts', {}), generated=False)
        return summary

    if marker.exists():
        marker.unlink()  # invalid until this run finishes
    counts: Dict[str, int] = {}
    for split, num_images in (('train', num_train), ('val', num_val)):
        split_counts = generate_split(split, paths[f'{split}_img_dir'],
                                      paths[f'{split}_ann_file'], num_images,
                                      image_size, seed, mode, progress)
        counts[f'num_{split}_images'] = split_counts['num_images']
        counts[f'num_{split}_annotations'] = split_counts['num_annotations']
    _write_json(marker, dict(params=params, counts=counts))
    summary.update(counts, generated=True)
    return summary
