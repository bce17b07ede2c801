# Base config of the CPU studies (tools/analysis_tools/study.py, see
# docs/study.md): the width-reduced demo Mask R-CNN (gc_r50_mask_synthetic.py)
# on the embedded synthetic set at 256 px, with a schedule sized for a
# 2-core CPU: 300 iterations of batch 4, checkpoints every 100 (so an
# interrupted run resumes), no in-training validation (the study evaluates
# each run with tools/test.py). The study's variants replace the backbone's
# plugins (its baseline removes the GC blocks). Data:
#   python tools/dataset_converters/generate_synthetic_coco.py
_base_ = './gc_r50_mask_synthetic.py'

max_iters = 300
train_cfg = dict(
    _delete_=True,
    type='IterBasedTrainLoop',
    max_iters=max_iters,
    val_interval=max_iters,
    val_begin=max_iters + 1)  # no validation during training
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
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(by_epoch=False, interval=100, max_keep_ckpts=1))
