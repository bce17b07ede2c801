# RetinaNet R18-FPN 1x COCO without attention blocks: MMDetection's
# retinanet/retinanet_r18_fpn_1x_coco.py (published: 31.7 box AP), the
# reference every *_r18_retina.py config is compared with.
_base_ = 'mmdet::retinanet/retinanet_r18_fpn_1x_coco.py'
custom_imports = dict(imports=['mmgc'], allow_failed_imports=False)
