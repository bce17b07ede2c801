# RetinaNet R50-FPN 1x COCO without attention blocks: MMDetection's
# retinanet/retinanet_r50_fpn_1x_coco.py (published: 36.5 box AP), the
# reference every *_r50_retina.py config is compared with.
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmgc'], allow_failed_imports=False)
