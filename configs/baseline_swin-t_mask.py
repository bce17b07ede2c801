# Mask R-CNN Swin-T-FPN 1x COCO without attention blocks: MMDetection's
# swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py (published: 42.7 box AP, 39.3
# mask AP), the reference every *_swin-t_mask.py config is compared with.
_base_ = 'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py'
custom_imports = dict(imports=['mmgc'], allow_failed_imports=False)
