"""Ground truth beside prediction, one colour per class, with a legend."""
from typing import List, Optional, Sequence, Tuple

import cv2
import mmcv
import numpy as np
import torch
from mmdet.registry import VISUALIZERS
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks, PolygonMasks, bitmap_to_polygon
from mmdet.visualization import DetLocalVisualizer
from mmengine.structures import InstanceData

Colour = Tuple[int, int, int]
TITLE_HEIGHT = 18  # px of the title strip above each panel
GAP = 4  # px between the panels
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def class_colours(num_classes: int,
                  palette: Optional[Sequence[Colour]] = None) -> List[Colour]:
    """One clearly distinct RGB colour per class.

    Up to 20 classes take matplotlib's qualitative ``tab10``/``tab20``
    colours (COCO's palette starts with two reds and two blues); more
    classes take the data set's ``palette``, else evenly spaced hues.

    Args:
        num_classes (int): Number of classes.
        palette (Sequence[tuple], optional): The data set's palette.

    Returns:
        list[tuple[int, int, int]]: ``num_classes`` RGB colours.
    """
    if num_classes <= 20:
        from matplotlib import colormaps
        cmap = colormaps['tab10' if num_classes <= 10 else 'tab20']
        return [
            tuple(int(round(255 * c)) for c in cmap(i)[:3])
            for i in range(num_classes)
        ]
    if palette is not None and len(palette) >= num_classes:
        return [
            tuple(int(c) for c in colour) for colour in palette[:num_classes]
        ]
    hues = np.linspace(0, 180, num_classes, endpoint=False).astype(np.uint8)
    hsv = np.stack(
        [hues, np.full_like(hues, 200),
         np.full_like(hues, 230)], axis=-1)[None]
    return [
        tuple(int(c) for c in rgb)
        for rgb in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0]
    ]


def _as_bool_masks(masks, shape: Tuple[int, int]) -> np.ndarray:
    """Masks of any mmdet form as ``[N, H, W]`` bool."""
    if isinstance(masks, (BitmapMasks, PolygonMasks)):
        masks = masks.to_ndarray()
    elif isinstance(masks, torch.Tensor):
        masks = masks.cpu().numpy()
    masks = np.asarray(masks).astype(bool)
    return masks.reshape(-1, *shape) if masks.size else np.zeros(
        (0, *shape), bool)


def _text_strip(width: int,
                height: int,
                text: str,
                colour: Colour = (235, 235, 235)) -> np.ndarray:
    """A dark strip with one line of text."""
    strip = np.full((height, width, 3), 32, np.uint8)
    cv2.putText(strip, text, (4, height - 5), _FONT, 0.42, colour, 1,
                cv2.LINE_AA)
    return strip


def legend(width: int, names: Sequence[str],
           colours: Sequence[Colour]) -> np.ndarray:
    """A strip with a colour swatch and the name of each class, wrapped to
    ``width`` pixels.

    Args:
        width (int): Width of the strip in pixels.
        names (Sequence[str]): Class names shown.
        colours (Sequence[tuple]): Their RGB colours.

    Returns:
        np.ndarray: ``[h, width, 3]`` uint8 RGB.
    """
    row_height, swatch = 18, 11
    items = []
    for name, colour in zip(names, colours):
        text_width = cv2.getTextSize(name, _FONT, 0.42, 1)[0][0]
        items.append((name, colour, swatch + 4 + text_width + 12))
    rows, row, used = [], [], 4
    for item in items:
        if row and used + item[2] > width:
            rows.append(row)
            row, used = [], 4
        row.append(item)
        used += item[2]
    rows.append(row)
    strip = np.full((row_height * len(rows) + 4, width, 3), 32, np.uint8)
    for r, row in enumerate(rows):
        x, y = 4, 2 + r * row_height
        for name, colour, item_width in row:
            cv2.rectangle(strip, (x, y + 3), (x + swatch, y + 3 + swatch),
                          colour, -1)
            cv2.putText(strip, name, (x + swatch + 4, y + 13), _FONT, 0.42,
                        (235, 235, 235), 1, cv2.LINE_AA)
            x += item_width
    return strip


@VISUALIZERS.register_module()
class DetComparisonVisualizer(DetLocalVisualizer):
    """MMDetection's ``DetLocalVisualizer`` drawn for reading.

    Ground truth (left) beside the prediction (right), each under a title
    with its object count (and the prediction's score threshold); boxes,
    labels and masks in one colour per class (the same in both panels, see
    :func:`class_colours`; mmdet jitters mask colours per object); a
    legend of the classes present below. Boxes and label positions are
    clipped to the image. Use it as ``visualizer = dict(
    type='DetComparisonVisualizer', ...)`` (``tools/test.py --show-dir``
    then draws with it, at ``default_hooks.visualization.score_thr``) or
    call :meth:`add_datasample` directly.

    Args:
        name (str): The instance name (mmengine's visualizer manager).
        mask_alpha (float): Opacity of the mask fill.
        **kwargs: ``DetLocalVisualizer``'s other arguments (``line_width``,
            ``vis_backends``, ``save_dir``...).
    """

    def __init__(self,
                 name: str = 'visualizer',
                 mask_alpha: float = 0.45,
                 **kwargs) -> None:
        kwargs.setdefault('line_width', 2)
        super().__init__(name=name, **kwargs)
        self.mask_alpha = mask_alpha

    def colours(self) -> List[Colour]:
        """The class colours of :attr:`dataset_meta`."""
        classes = self.dataset_meta.get('classes') or ()
        return class_colours(len(classes), self.dataset_meta.get('palette'))

    def draw_instances(self, image: np.ndarray, instances: InstanceData,
                       colours: Sequence[Colour]) -> np.ndarray:
        """Masks (filled, outlined), boxes and ``class score`` labels of
        ``instances`` in their class colours.

        Args:
            image (np.ndarray): RGB ``[H, W, 3]`` uint8.
            instances (InstanceData): ``labels`` and any of ``bboxes``,
                ``masks``, ``scores``.
            colours (Sequence[tuple]): RGB colour per class.

        Returns:
            np.ndarray: The drawing, RGB ``[H, W, 3]`` uint8.
        """
        self.set_image(image)
        height, width = image.shape[:2]
        classes = self.dataset_meta.get('classes') or ()
        labels = [int(label) for label in instances.labels]
        if not labels:
            return self.get_image()
        instance_colours = [colours[label] for label in labels]
        if 'masks' in instances:
            masks = _as_bool_masks(instances.masks, (height, width))
            if len(masks):
                self.draw_binary_masks(
                    masks, colors=instance_colours, alphas=self.mask_alpha)
                for mask, colour in zip(masks, instance_colours):
                    contours, _ = bitmap_to_polygon(mask)
                    if contours:
                        self.draw_polygons(
                            contours, edge_colors=colour, line_widths=1)
        if 'bboxes' in instances:
            boxes = instances.bboxes
            boxes = getattr(boxes, 'tensor', boxes)  # mmdet's HorizontalBoxes
            boxes = torch.as_tensor(boxes).float().cpu().clone()
            boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width - 1)
            boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height - 1)
            self.draw_bboxes(
                boxes,
                edge_colors=instance_colours,
                line_widths=self.line_width)
            font_size = max(7, min(12, min(height, width) // 24))
            for i, (box, label) in enumerate(zip(boxes.tolist(), labels)):
                text = classes[label] if label < len(classes) else str(label)
                if 'scores' in instances:
                    text += f' {float(instances.scores[i]):.2f}'
                # inside the image: shifted left when it would run over
                # the right edge (about 0.62 font sizes per character)
                text_width = 0.62 * font_size * len(text)
                position = np.array([
                    max(0, min(box[0] + 1, width - text_width)),
                    min(max(box[1] - 1.6 * font_size, 0), height - 1)
                ])
                self.draw_texts(
                    text,
                    position,
                    colors='white',
                    font_sizes=font_size,
                    bboxes=[
                        dict(
                            facecolor=tuple(c / 255
                                            for c in instance_colours[i]),
                            alpha=0.8,
                            pad=0.6,
                            edgecolor='none')
                    ])
        return self.get_image()

    def add_datasample(self,
                       name: str,
                       image: np.ndarray,
                       data_sample: Optional[DetDataSample] = None,
                       draw_gt: bool = True,
                       draw_pred: bool = True,
                       show: bool = False,
                       wait_time: float = 0,
                       out_file: Optional[str] = None,
                       pred_score_thr: float = 0.5,
                       step: int = 0) -> None:
        """Draw ground truth beside prediction (``DetLocalVisualizer``'s
        signature); predictions below ``pred_score_thr`` are left out."""
        image = image.clip(0, 255).astype(np.uint8)
        colours = self.colours()
        classes = self.dataset_meta.get('classes') or ()
        panels, shown = [], set()
        if data_sample is not None:
            data_sample = data_sample.cpu()
            if draw_gt and 'gt_instances' in data_sample:
                gt = data_sample.gt_instances
                panels.append(
                    self._panel(
                        image, gt, colours, f'ground truth: {len(gt)} object' +
                        ('s' if len(gt) != 1 else '')))
                shown.update(int(label) for label in gt.labels)
            if draw_pred and 'pred_instances' in data_sample:
                pred = data_sample.pred_instances
                pred = pred[pred.scores >= pred_score_thr]
                panels.append(
                    self._panel(
                        image, pred, colours, f'prediction (score >= '
                        f'{pred_score_thr:g}): {len(pred)}'))
                shown.update(int(label) for label in pred.labels)
        if not panels:
            panels = [image]
        gap = np.full((panels[0].shape[0], GAP, 3), 255, np.uint8)
        row = panels[0]
        for panel in panels[1:]:
            row = np.concatenate([row, gap, panel], axis=1)
        present = sorted(label for label in shown if label < len(classes))
        if present:
            row = np.concatenate([
                row,
                legend(row.shape[1], [classes[i] for i in present],
                       [colours[i] for i in present])
            ],
                                 axis=0)
        if show:
            self.show(row, win_name=name, wait_time=wait_time)
        if out_file is not None:
            mmcv.imwrite(row[..., ::-1], out_file)
        else:
            self.add_image(name, row, step)

    def _panel(self, image: np.ndarray, instances: InstanceData,
               colours: Sequence[Colour], title: str) -> np.ndarray:
        drawing = self.draw_instances(image, instances, colours)
        return np.concatenate(
            [_text_strip(drawing.shape[1], TITLE_HEIGHT, title), drawing],
            axis=0)
