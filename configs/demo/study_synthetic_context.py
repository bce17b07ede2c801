# The CPU study on the context split of the embedded generator: the same
# shape is one class in a striped scene and another in a checkered one, and
# the scene shows only in a frame along the image border, away from the
# objects -- context far from an object decides its class. Data:
#   python tools/dataset_converters/generate_synthetic_coco.py \
#       --mode context --out-dir data/synthetic_context
_base_ = './study_synthetic.py'

# Must equal mmgc.datasets.synthetic_coco.CONTEXT_CLASSES (checked by the
# tests).
classes = ('circle_striped', 'circle_checkered', 'square_striped',
           'square_checkered', 'triangle_striped', 'triangle_checkered')
data_root = 'data/synthetic_context/'

model = dict(
    roi_head=dict(
        bbox_head=dict(num_classes=len(classes)),
        mask_head=dict(num_classes=len(classes))))
train_dataloader = dict(
    dataset=dict(data_root=data_root, metainfo=dict(classes=classes)))
val_dataloader = dict(
    dataset=dict(data_root=data_root, metainfo=dict(classes=classes)))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator
