# Mask R-CNN RegNetX-3.2GF-FPN 1x COCO without attention blocks:
# MMDetection's regnet/mask-rcnn_regnetx-3.2GF_fpn_1x_coco.py (published:
# 40.3 box AP, 36.6 mask AP), the reference every *_regnetx-3.2gf_mask.py
# config is compared with.
_base_ = 'mmdet::regnet/mask-rcnn_regnetx-3.2GF_fpn_1x_coco.py'
custom_imports = dict(imports=['mmgc'], allow_failed_imports=False)
