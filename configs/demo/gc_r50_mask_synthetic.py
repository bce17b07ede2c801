# The main job: a width-reduced GC Mask R-CNN (gc_r50_mask.py with a 16-wide
# ResNet-50 stem and a 64-channel FPN) trained from scratch on the embedded
# synthetic COCO-format set at 256 px, sized to train on a laptop CPU in
# about 13 minutes. Generate the data first:
#   python tools/dataset_converters/generate_synthetic_coco.py
_base_ = '../gc_r50_mask.py'

# Must equal mmgc.datasets.SYNTHETIC_CLASSES (checked by the tests).
classes = ('circle', 'square', 'triangle', 'star', 'cross')
num_classes = len(classes)
data_root = 'data/synthetic/'
image_size = (256, 256)
fpn_channels = 64
max_iters = 750

model = dict(
    backbone=dict(
        base_channels=16,  # ResNet-50 at 1/4 width: c2..c5 = 64..512
        frozen_stages=-1,  # from scratch: train (and update BN of) all
        norm_eval=False,
        init_cfg=None),  # no ImageNet download
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=fpn_channels),
    rpn_head=dict(in_channels=fpn_channels, feat_channels=fpn_channels),
    roi_head=dict(
        # mmcv's CPU RoIAlign dominates a step with the adaptive
        # sampling_ratio=0 (up to ~16 samples per bin at this scale); 2x2
        # samples per bin cut the step time by about a third.
        bbox_roi_extractor=dict(
            roi_layer=dict(sampling_ratio=2), out_channels=fpn_channels),
        bbox_head=dict(
            in_channels=fpn_channels,
            fc_out_channels=256,
            num_classes=num_classes),
        mask_roi_extractor=dict(
            roi_layer=dict(sampling_ratio=2), out_channels=fpn_channels),
        mask_head=dict(
            in_channels=fpn_channels,
            conv_out_channels=fpn_channels,
            num_classes=num_classes)),
    # A few objects per image: fewer proposals and sampled RoIs train as
    # well and cut the CPU step time (RoIAlign backward, NMS) by about 25%.
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=1000, max_per_img=500),
        rcnn=dict(sampler=dict(num=128))))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor')),
]
# CheckedCocoDataset (mmgc.datasets): CocoDataset that rejects bad
# annotation/image files when built and warns about skipped objects.
train_dataloader = dict(
    batch_size=4,
    num_workers=1,
    persistent_workers=True,
    dataset=dict(
        type='CheckedCocoDataset',
        data_root=data_root,
        metainfo=dict(classes=classes),
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=4),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4,
    num_workers=1,
    persistent_workers=True,
    dataset=dict(
        type='CheckedCocoDataset',
        data_root=data_root,
        metainfo=dict(classes=classes),
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
# CheckedCocoMetric (mmgc.evaluation): CocoMetric that checks its ground
# truth file (duplicate ids, unknown images/categories) before evaluating.
val_evaluator = dict(
    type='CheckedCocoMetric',
    ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

train_cfg = dict(
    _delete_=True,
    type='IterBasedTrainLoop',
    max_iters=max_iters,
    val_interval=max_iters)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05),
    clip_grad=dict(max_norm=10, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(
        type='CosineAnnealingLR',
        by_epoch=False,
        begin=50,
        end=max_iters,
        T_max=max_iters - 50,
        eta_min=2e-5),
]
auto_scale_lr = dict(enable=False, base_batch_size=4)
default_hooks = dict(
    logger=dict(interval=25),
    checkpoint=dict(by_epoch=False, interval=250, max_keep_ckpts=2),
    # tools/test.py --show-dir: predictions scoring >= 0.5 (mmdet: 0.3)
    visualization=dict(interval=10, score_thr=0.5))
# ground truth beside prediction, one colour per class, a legend
# (mmgc.visualization)
visualizer = dict(type='DetComparisonVisualizer')
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
