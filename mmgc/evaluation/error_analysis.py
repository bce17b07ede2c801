"""COCO error analysis: where the AP of each class and object size goes.

MMDetection's ``tools/analysis_tools/coco_error_analysis.py`` (after the
COCO API's ``analyze``, Hoiem et al.): precision-recall curves at 100
detections per image, stacked from the strictest to the most lenient
reading of the detections --

====  ======================================================================
C75   PR at IoU .75 (area under it: AP75)
C50   PR at IoU .50 (AP50)
Loc   PR at IoU .10: localisation errors forgiven (duplicates still count)
Sim   PR at IoU .10 after detections on objects of another class of the
      same supercategory are removed
Oth   PR at IoU .10 after detections on objects of any other class are
      removed
BG    PR after all background false positives are removed (1 where Oth
      reaches a recall, 0 beyond)
FN    1: the remaining gap is objects never detected
====  ======================================================================

"Removed" means: the other classes' objects become ignored ground truth of
the class, so a detection matched to one counts neither as a true nor as
a false positive, and they add nothing to the objects to find. (mmdet's
script marks them with an ``ignored_split`` key that pycocotools never
reads, so there they become objects of the class to be found and lower
Sim/Oth; here they are ignored, as in the COCO API's analysis.)
"""
import contextlib
import io
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

#: The stacked curves, strictest first.
CURVES = ('C75', 'C50', 'Loc', 'Sim', 'Oth', 'BG', 'FN')
#: COCO's area ranges, in ``COCOeval.params.areaRngLbl`` order.
AREAS = ('allarea', 'small', 'medium', 'large')
#: mmdet's colours of the areas between the curves.
COLOURS = ((1, 1, 1), (1, 1, 1), (0.31, 0.51, 0.74), (0.75, 0.31, 0.30),
           (0.36, 0.90, 0.38), (0.50, 0.39, 0.64), (1, 0.6, 0))
#: Flag on a ground-truth object that :class:`ConfusionIgnoringCOCOeval`
#: ignores.
CONFUSION_FLAG = 'mmgc_ignored_confusion'


class ConfusionIgnoringCOCOeval(COCOeval):
    """``COCOeval`` that treats objects flagged with :data:`CONFUSION_FLAG`
    as ignored (pycocotools derives ``ignore`` from ``iscrowd`` alone)."""

    def _prepare(self) -> None:
        super()._prepare()
        for objects in self._gts.values():
            for obj in objects:
                if obj.get(CONFUSION_FLAG):
                    obj['ignore'] = 1


def _quiet_coco(dataset: dict) -> COCO:
    """A pycocotools ``COCO`` of ``dataset`` (without its prints)."""
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _precision(coco_gt: COCO,
               coco_dt: COCO,
               iou_type: str,
               iou_thrs: Sequence[float],
               cat_ids: Sequence[int],
               area_rng: Optional[List[List[float]]],
               evaluator: type = COCOeval) -> Tuple[np.ndarray, np.ndarray]:
    """PR curves at 100 detections per image.

    Returns:
        tuple: precision ``[T, R, K, A]`` (-1 where a class has no object
        of that size) and the recall thresholds ``[R]``.
    """
    coco_eval = evaluator(coco_gt, coco_dt, iou_type)
    coco_eval.params.imgIds = coco_gt.getImgIds()
    coco_eval.params.catIds = list(cat_ids)
    coco_eval.params.iouThrs = np.array(iou_thrs, dtype=np.float64)
    coco_eval.params.maxDets = [100]
    if area_rng is not None:
        coco_eval.params.areaRng = area_rng
    with contextlib.redirect_stdout(io.StringIO()):
        coco_eval.evaluate()
        coco_eval.accumulate()
    return coco_eval.eval['precision'][..., 0], coco_eval.params.recThrs


def _confusion_precision(coco_gt: COCO, coco_dt: COCO, iou_type: str,
                         cat_id: int, confused: set,
                         area_rng: Optional[List[List[float]]]) -> np.ndarray:
    """PR ``[R, A]`` of class ``cat_id`` at IoU .1 with the objects of the
    ``confused`` classes turned into its ignored objects."""
    annotations = []
    for ann in coco_gt.dataset['annotations']:
        if ann['category_id'] == cat_id:
            annotations.append(ann)
        elif ann['category_id'] in confused:
            annotations.append(
                dict(ann, category_id=cat_id, **{CONFUSION_FLAG: 1}))
    gt = _quiet_coco(dict(coco_gt.dataset, annotations=annotations))
    dt = _quiet_coco(
        dict(
            coco_dt.dataset,
            annotations=[
                ann for ann in coco_dt.dataset['annotations']
                if ann['category_id'] == cat_id
            ]))
    precision, _ = _precision(gt, dt, iou_type, [0.1], [cat_id], area_rng,
                              ConfusionIgnoringCOCOeval)
    return precision[0, :, 0, :]  # [R, A]


def error_curves(
        coco_gt: COCO,
        coco_dt: COCO,
        iou_type: str = 'bbox',
        areas: Optional[Sequence[float]] = None
) -> Tuple[np.ndarray, np.ndarray]:
    """The stacked PR curves of every class and area.

    Args:
        coco_gt (COCO): Ground truth.
        coco_dt (COCO): Detections (``coco_gt.loadRes(results)``).
        iou_type (str): ``'bbox'`` or ``'segm'``.
        areas (Sequence[float], optional): Upper bounds of small, medium and
            large (default COCO's 32², 96², 1e5²).

    Returns:
        tuple: ``curves`` ``[7, R, K, 4]`` (the :data:`CURVES` of each
        class, in ``coco_gt.getCatIds()`` order, and area, -1 replaced by
        0 as in mmdet) and the recall thresholds ``[R]``.
    """
    if iou_type not in ('bbox', 'segm'):
        raise ValueError(f"iou_type={iou_type!r}: expected 'bbox' or 'segm'")
    area_rng = None
    if areas is not None:
        if len(areas) != 3 or not 0 < areas[0] < areas[1] < areas[2]:
            raise ValueError(f'areas={list(areas)}: expected 3 increasing '
                             f'positive upper bounds (small, medium, large)')
        area_rng = [[0, areas[2]], [0, areas[0]], [areas[0], areas[1]],
                    [areas[1], areas[2]]]
    cat_ids = coco_gt.getCatIds()
    strict, rec_thrs = _precision(coco_gt, coco_dt, iou_type, [0.75, 0.5, 0.1],
                                  cat_ids, area_rng)  # [3, R, K, A]
    curves = np.zeros((len(CURVES), *strict.shape[1:]))  # [7, R, K, A]
    curves[:3] = strict
    supercategory = {
        c['id']: c.get('supercategory')
        for c in coco_gt.dataset['categories']
    }
    for k, cat_id in enumerate(cat_ids):
        same = {
            c
            for c, s in supercategory.items()
            if s == supercategory[cat_id] and c != cat_id
        }
        others = set(cat_ids) - {cat_id}
        curves[3, :, k] = _confusion_precision(coco_gt, coco_dt, iou_type,
                                               cat_id, same, area_rng)
        curves[4, :, k] = _confusion_precision(coco_gt, coco_dt, iou_type,
                                               cat_id, others, area_rng)
    curves[curves == -1] = 0
    curves[5] = curves[4] > 0
    curves[6] = 1.0
    return curves, rec_thrs


def curve_aps(curves: np.ndarray) -> np.ndarray:
    """Area under each curve (mean precision over recall, and over classes
    when ``curves`` holds several): ``[7, R, K, A]`` -> ``[7, K, A]``, or
    ``[7, R, A]`` -> ``[7, A]``."""
    return curves.mean(axis=1)


def plot_curves(curves: np.ndarray, rec_thrs: np.ndarray, title: str,
                out_file: str) -> None:
    """Draw one class's (or the mean) stacked curves ``[7, R]`` as mmdet
    does: filled bands with the area under each curve in the legend.

    Args:
        curves (np.ndarray): ``[7, R]``.
        rec_thrs (np.ndarray): ``[R]``.
        title (str): Figure title.
        out_file (str): PNG file to write.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(6, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(111)
    lower = np.zeros_like(rec_thrs)  # [R]
    for name, colour, upper in zip(CURVES, COLOURS, curves):
        ax.plot(rec_thrs, upper, color=(0, 0, 0), linewidth=0.5)
        ax.fill_between(
            rec_thrs,
            lower,
            upper,
            color=colour,
            label=f'[{upper.mean():.3f}] {name}')
        lower = upper
    ax.set_xlabel('recall')
    ax.set_ylabel('precision')
    ax.set_xlim(0, 1.0)
    ax.set_ylim(0, 1.0)
    ax.set_title(title)
    ax.legend(loc='lower left', fontsize='small')
    fig.savefig(out_file)


def analyze_results(
    coco_gt: COCO,
    coco_dt: COCO,
    out_dir: str,
    iou_type: str = 'bbox',
    areas: Optional[Sequence[float]] = None,
    plot_classes: Optional[Sequence[str]] = None
) -> Dict[str, Dict[str, Dict[str, float]]]:
    """Write the PR pictures ``<out_dir>/<iou_type>/<iou_type>-<class>-
    <area>.png`` (mmdet's names: ``allclass`` for the mean over classes,
    areas ``allarea``, ``small``, ``medium``, ``large``) and return the
    area under every curve.

    Args:
        coco_gt (COCO): Ground truth.
        coco_dt (COCO): Detections.
        out_dir (str): Output folder.
        iou_type (str): ``'bbox'`` or ``'segm'``.
        areas (Sequence[float], optional): See :func:`error_curves`.
        plot_classes (Sequence[str], optional): Draw only these classes
            (``allclass`` always); default: all.

    Returns:
        dict: ``{class name | 'allclass': {area: {curve: AP}}}``.
    """
    names = {c['id']: c['name'] for c in coco_gt.dataset['categories']}
    cat_ids = coco_gt.getCatIds()
    if plot_classes is not None:
        unknown = [n for n in plot_classes if n not in names.values()]
        if unknown:
            raise ValueError(f'classes {unknown} are not categories of the '
                             f'ground truth ({sorted(names.values())})')
    curves, rec_thrs = error_curves(coco_gt, coco_dt, iou_type, areas)
    folder = osp.join(out_dir, iou_type)
    os.makedirs(folder, exist_ok=True)
    per_class = [(names[c], curves[:, :, k]) for k, c in enumerate(cat_ids)]
    per_class.append(('allclass', curves.mean(axis=2)))  # [7, R, A]
    summary = {}
    for name, class_curves in per_class:  # [7, R, A]
        aps = curve_aps(class_curves)  # [7, A]
        summary[name] = {
            area: dict(zip(CURVES, map(float, aps[:, a])))
            for a, area in enumerate(AREAS)
        }
        if plot_classes is not None and name != 'allclass' and \
                name not in plot_classes:
            continue
        for a, area in enumerate(AREAS):
            title = f'{iou_type}-{name}-{area}'
            plot_curves(class_curves[:, :, a], rec_thrs, title,
                        osp.join(folder, f'{title}.png'))
    return summary
