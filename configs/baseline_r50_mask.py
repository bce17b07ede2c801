# Mask R-CNN R50-FPN 1x COCO without attention blocks: MMDetection's
# mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py (published: 38.2 box AP, 34.7 mask
# AP), the reference every *_r50_mask.py config is compared with.
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmgc'], allow_failed_imports=False)
