"""``CheckedCocoDataset``: mmdet's ``CocoDataset`` that refuses bad data
when it is built (before training) instead of giving a silently wrong mAP.

================================  ============================================
problem                           behaviour
================================  ============================================
invalid JSON / not a COCO file    ``ValueError`` naming the file and the
                                  JSON problem (line, column)
duplicate image/annotation/       ``ValueError`` naming the ids (and file
category ids                      names); pycocotools would merge them
annotation of an unknown image    ``ValueError`` naming annotation and image
                                  id; pycocotools would drop it
category id not in "categories"   ``ValueError`` naming annotation id, image
                                  id and the allowed ids; CocoDataset would
                                  drop it
missing or empty (0-byte) image   ``FileNotFoundError`` naming the files and
file                              image ids (``check_image_files=False``
                                  turns the check off)
box outside its image,            instance skipped, one summary warning with
degenerate box or mask            counts and annotation ids
box partly outside its image      clipped to the image, same warning
image without annotations         kept in test mode (it counts for mAP),
                                  dropped for training by
                                  ``filter_cfg.filter_empty_gt`` -- also when
                                  every annotation of it was skipped
configured class name not in the  ``ValueError`` naming it and the file's
file; classes repeated or not in  closest names / the order to use
the file's category order         (:mod:`~mmgc.datasets.class_checks`)
file categories not configured    one warning with the number of objects and
                                  images left out
================================  ============================================

``metainfo=dict(classes='from_file')`` takes the classes from the file.

On clean data the parsed ``data_list`` is ``CocoDataset``'s, item for item.
"""
import logging
import os
from collections import defaultdict
from typing import Any, Dict, List, Optional, Tuple

from mmdet.datasets import CocoDataset
from mmdet.datasets.api_wrappers import COCO
from mmdet.registry import DATASETS
from mmengine.fileio import LocalBackend, get_file_backend, get_local_path
from mmengine.logging import print_log

from .class_checks import FROM_FILE, describe_left_out, resolve_classes
from .coco_checks import (describe_problems, join_examples, load_coco_json,
                          sanitize_instance)


class CheckedCOCO(COCO):
    """mmdet's COCO API on a file checked by
    :func:`~mmgc.datasets.coco_checks.load_coco_json` (parsed once).

    Args:
        annotation_file (str, optional): Local path of the JSON file.
    """

    def __init__(self, annotation_file: Optional[str] = None) -> None:
        super().__init__(None)
        if annotation_file is None:
            return
        self.dataset = load_coco_json(annotation_file)
        self.createIndex()
        # mmdet's snake-case aliases, set by its __init__ on the old index
        self.img_ann_map = self.imgToAnns
        self.cat_img_map = self.catToImgs


@DATASETS.register_module()
class CheckedCocoDataset(CocoDataset):
    """``CocoDataset`` that checks its annotation file and image files when
    built; see the module docstring for what is checked and how each
    problem is reported.

    Args:
        *args: ``CocoDataset``'s arguments (``ann_file``, ``data_root``,
            ``data_prefix``, ``filter_cfg``, ``pipeline``, ...).
        check_image_files (bool): Check that every image file exists and is
            not empty (one ``stat`` per image; ``exists`` on other storage
            backends). Default: True.
        **kwargs: ``CocoDataset``'s keyword arguments.
    """

    COCOAPI = CheckedCOCO

    def __init__(self,
                 *args: Any,
                 check_image_files: bool = True,
                 **kwargs: Any) -> None:
        self.check_image_files = check_image_files
        super().__init__(*args, **kwargs)

    @classmethod
    def _load_metainfo(cls, metainfo: Optional[dict] = None) -> dict:
        """mmengine's ``_load_metainfo``, without reading ``'from_file'``
        as the name of a file of class names (it would warn)."""
        if metainfo is not None and metainfo.get('classes') == FROM_FILE:
            metainfo = dict(metainfo)
            del metainfo['classes']
            return dict(super()._load_metainfo(metainfo), classes=FROM_FILE)
        return super()._load_metainfo(metainfo)

    def load_data_list(self) -> List[dict]:
        """``CocoDataset.load_data_list`` on the checked file, then warn
        about skipped or clipped instances and check the image files.

        Returns:
            list[dict]: The parsed images and their instances.
        """
        self._problems: Dict[str, List[Tuple[Any, Any]]] = defaultdict(list)
        self._num_annotations = 0
        with get_local_path(
                self.ann_file, backend_args=self.backend_args) as local_path:
            coco = self.COCOAPI(local_path)
        self._resolve_classes(coco)
        # CocoDataset.load_data_list reads the file through self.COCOAPI:
        # hand it the file parsed above instead of parsing it again
        self.COCOAPI = lambda _: coco
        try:
            data_list = super().load_data_list()
        finally:
            del self.COCOAPI
        if self._problems:
            print_log(
                f'{type(self).__name__}: {self.ann_file}: '
                f'{describe_problems(self._problems, self._num_annotations)}'
                f'. This data set leaves the skipped ones out (and uses '
                f'the clipped boxes); CocoMetric evaluates against the file '
                f'as it is.',
                logger='current',
                level=logging.WARNING)
        if self.check_image_files:
            self._check_image_files(data_list)
        return data_list

    def _resolve_classes(self, coco: CheckedCOCO) -> None:
        """Check ``metainfo['classes']`` against the file's categories
        (``'from_file'`` takes them from it); warn about left-out ones."""
        categories = coco.dataset['categories']
        classes, left_out = resolve_classes(
            self._metainfo.get('classes'), categories, self.ann_file)
        self._metainfo['classes'] = classes
        palette = self._metainfo.get('palette')
        if isinstance(palette, (list, tuple)) and len(palette) < len(classes):
            self._metainfo['palette'] = 'random'  # mmdet's get_palette
        if left_out:
            what = describe_left_out(left_out,
                                     coco.dataset.get('annotations', []),
                                     len(categories))
            print_log(
                f'{type(self).__name__}: {self.ann_file}: {what}. '
                f"metainfo=dict(classes='from_file') uses every category",
                logger='current',
                level=logging.WARNING)

    def parse_data_info(self, raw_data_info: dict) -> dict:
        """Skip or clip the image's unusable instances (recording why), then
        parse as ``CocoDataset`` does.

        Args:
            raw_data_info (dict): ``raw_img_info`` and ``raw_ann_info``.

        Returns:
            dict: The parsed image with its ``instances``.
        """
        image = raw_data_info['raw_img_info']
        kept = []
        for ann in raw_data_info['raw_ann_info']:
            self._num_annotations += 1
            if ann.get('ignore', False):
                kept.append(ann)  # CocoDataset drops it, as ever
                continue
            reason, usable = sanitize_instance(ann, image['height'],
                                               image['width'])
            if reason is not None:
                self._problems[reason].append((ann['id'], image['img_id']))
            if usable is not None:
                kept.append(usable)
        return super().parse_data_info(dict(raw_data_info, raw_ann_info=kept))

    def filter_data(self) -> List[dict]:
        """``CocoDataset.filter_data``; with ``filter_empty_gt`` (training)
        also drop images left without instances by skipped annotations.

        Returns:
            list[dict]: The kept images.
        """
        data_list = super().filter_data()
        if self.test_mode or not (self.filter_cfg or {}).get(
                'filter_empty_gt', False):
            return data_list
        return [info for info in data_list if info['instances']]

    def _check_image_files(self, data_list: List[dict]) -> None:
        """Raise ``FileNotFoundError`` naming the images whose files are
        missing or empty."""
        if not data_list:
            return
        backend = get_file_backend(
            data_list[0]['img_path'], backend_args=self.backend_args)
        bad = []
        for info in data_list:
            path = info['img_path']
            if isinstance(backend, LocalBackend):
                try:
                    problem = ('empty (0 bytes)'
                               if os.path.getsize(path) == 0 else None)
                except OSError:
                    problem = 'missing'
            else:
                problem = None if backend.exists(path) else 'missing'
            if problem:
                bad.append(f'{path} (image id {info["img_id"]!r}): {problem}')
        if bad:
            raise FileNotFoundError(
                f'{type(self).__name__}: {len(bad)} of {len(data_list)} '
                f'images of {self.ann_file} cannot be read: '
                f'{join_examples(bad, "; ")}. Check data_root / data_prefix '
                f'(img={self.data_prefix.get("img")!r}) or the files')
