"""The tf.distribute strategy a sweep's trials can run under."""


def mirrored_strategy():
    """tf.distribute.MirroredStrategy over the visible GPUs, or None (< 2)."""
    # TensorFlow loads for seconds: only when a sweep asks for a strategy.
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) < 2:
        return None
    return tf.distribute.MirroredStrategy([g.name for g in gpus])
