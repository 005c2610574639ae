"""Optimizers by name: the config's `optimizer` setting and the grids'.

    optimizer = make_optimizer("momentum", learning_rate=0.01)
    register_optimizer("lion", lambda lr, weight_decay: keras.optimizers.Lion(lr))

A factory takes (learning_rate, weight_decay) and returns a fresh Keras
optimizer. `weight_decay` is the config's: only AdamW's decoupled decay
reads it here (the L2 regulariser is the models' `kernel_regularizer`,
`ComparisonConfig.l2_factor`); other factories ignore it.
"""

import keras

from keras_egf.registry import Registry

OPTIMIZERS = Registry("optimizer",
                      register_with="keras_egf.optimizers.register_optimizer")


def register_optimizer(name, factory, overwrite=False):
    """Registers `factory(learning_rate, weight_decay) -> keras optimizer`
    as `name`; then a config with optimizer=name validates and trains."""
    if not callable(factory):
        raise ValueError(
            f"`factory` must be callable. Received: factory={factory!r}")
    return OPTIMIZERS.register(name, factory, overwrite=overwrite)


def make_optimizer(name, learning_rate, weight_decay=0.0):
    """A fresh Keras optimizer registered as `name` (momentum = SGD with
    momentum 0.9); an unknown name lists the registered ones."""
    return OPTIMIZERS.get(name)(learning_rate, weight_decay)


register_optimizer("sgd", lambda lr, weight_decay: keras.optimizers.SGD(lr))
register_optimizer("momentum", lambda lr, weight_decay: keras.optimizers.SGD(
    lr, momentum=0.9))
register_optimizer("adagrad", lambda lr, weight_decay: keras.optimizers.Adagrad(lr))
register_optimizer("rmsprop", lambda lr, weight_decay: keras.optimizers.RMSprop(lr))
register_optimizer("adam", lambda lr, weight_decay: keras.optimizers.Adam(lr))
register_optimizer("adamw", lambda lr, weight_decay: keras.optimizers.AdamW(
    lr, weight_decay=weight_decay))
