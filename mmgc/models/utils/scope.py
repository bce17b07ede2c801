"""Find mmgc's blocks whatever the default scope.

mmcv's ``build_plugin_layer`` and ``build_conv_layer`` -- which mmdet's
``ResNet``, mmgc's ``PluginResNet`` / ``PluginFPN`` and every other plugin
host call -- look a type up in the registry of the *current default scope*
and its parents. Inside an MMDetection config that scope is ``'mmdet'``,
whose registry holds mmgc's blocks; outside one (a backbone built in a
script or a test, or under another OpenMMLab scope) there is no default
scope, the lookup starts at mmengine's root ``MODELS`` and mmgc's blocks
are not found, while mmcv's own (registered in the root) are.

:func:`register_in_root` also registers mmgc's blocks in mmengine's root
``MODELS``, which every scope's registry falls back to, so ``import mmgc``
is all it takes.
"""
from mmengine.registry import MODELS as ROOT_MODELS


def register_in_root(*classes: type) -> None:
    """Register ``classes`` in mmengine's root ``MODELS`` under their class
    names (as mmdet's registry has them); a name already bound to the same
    class is left alone.

    Args:
        *classes (type): Block or conv-layer classes.

    Raises:
        KeyError: if a name is taken by another class (mmengine's error).
    """
    for cls in classes:
        if ROOT_MODELS.module_dict.get(cls.__name__) is not cls:
            ROOT_MODELS.register_module(module=cls)
