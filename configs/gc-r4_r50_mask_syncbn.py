# gc-r4_r50_mask.py with synchronised BN in the backbone, trained (not
# frozen in eval mode): MMDetection's
# gcnet/mask-rcnn_r50-syncbn-gcb-r4-c3-c5_fpn_1x_coco.py (published: 40.7
# box AP, 36.5 mask AP). Needs distributed training (SyncBN); a
# non-distributed mmengine Runner reverts SyncBN to BN.
_base_ = './gc-r4_r50_mask.py'

model = dict(
    backbone=dict(
        norm_cfg=dict(type='SyncBN', requires_grad=True), norm_eval=False))
