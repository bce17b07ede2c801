# gc_r50_mask.py (GC r16 after conv3 of every bottleneck in c3-c5) plus a
# GC block (ratio 1/16) on each of the FPN's four output convs, i.e. on
# every pyramid level P2-P5 (P6 is max-pooled from the GC-refined P5).
_base_ = './gc_r50_mask.py'

model = dict(
    neck=dict(
        type='PluginFPN',
        plugins=[
            dict(
                cfg=dict(type='GCBlock', ratio=1. / 16),
                position='after_fpn_conv',
                levels=(True, True, True, True))
        ]))
