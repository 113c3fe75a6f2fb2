"""The GLCM_Multiple_Offsets_Layer of the question this project started from, fixed
only as far as needed to run under tf.function: a baseline to compare against, not
product code.
It wraps around image borders (tf.roll) and loops over offsets and the batch."""

import tensorflow as tf


class SeedGLCMMultipleOffsets(tf.keras.layers.Layer):
    def __init__(self, num_levels, offsets, **kwargs):
        super().__init__(**kwargs)
        self.num_levels = num_levels
        self.offsets = tf.constant(offsets, dtype=tf.int32)

    def call(self, inputs):
        inputs = tf.clip_by_value(tf.cast(inputs, tf.int32), 0, self.num_levels - 1)
        batch_size = tf.shape(inputs)[0]
        num_offsets = tf.shape(self.offsets)[0]
        glcm = tf.zeros([batch_size, num_offsets, self.num_levels, self.num_levels])

        def offset_body(j, glcm_j):
            shifted = tf.roll(inputs, shift=self.offsets[j], axis=[1, 2])
            flat = tf.reshape(inputs, [batch_size, -1])
            shifted_flat = tf.reshape(shifted, [batch_size, -1])

            def batch_body(i, glcm_b):
                indices = tf.stack([flat[i], shifted_flat[i]], axis=1)
                updates = tf.ones([tf.shape(indices)[0]], dtype=tf.float32)
                new = tf.scatter_nd(indices, updates, [self.num_levels, self.num_levels])
                glcm_b = tf.tensor_scatter_nd_add(glcm_b, tf.stack([[i, j]]), new[None])
                return i + 1, glcm_b

            _, glcm_j = tf.while_loop(lambda i, g: i < batch_size, batch_body,
                                      [tf.constant(0), glcm_j])
            return j + 1, glcm_j

        _, glcm = tf.while_loop(lambda j, g: j < num_offsets, offset_body,
                                [tf.constant(0), glcm])
        return glcm


def seed_features(glcm):
    """The seed feature layer's formulas (contrast, dissimilarity, its 'homogeneity',
    correlation), vectorized: the original crashes (tf.shape used as a Python int)."""
    n = tf.shape(glcm)[-1]
    i, j = tf.meshgrid(tf.range(n, dtype=tf.float32), tf.range(n, dtype=tf.float32),
                       indexing="ij")
    p = glcm / tf.reduce_sum(glcm, axis=[2, 3], keepdims=True)
    contrast = tf.reduce_sum(p * (i - j) ** 2, axis=[2, 3])
    dissimilarity = tf.reduce_sum(p * tf.abs(i - j), axis=[2, 3])
    homogeneity = tf.reduce_sum(p / (1 + tf.abs(i - j)), axis=[2, 3])
    mi = tf.reduce_sum(p * i, axis=[2, 3], keepdims=True)
    mj = tf.reduce_sum(p * j, axis=[2, 3], keepdims=True)
    si = tf.sqrt(tf.reduce_sum(p * (i - mi) ** 2, axis=[2, 3]))
    sj = tf.sqrt(tf.reduce_sum(p * (j - mj) ** 2, axis=[2, 3]))
    cov = tf.reduce_sum(p * (i - mi) * (j - mj), axis=[2, 3])
    return tf.stack([contrast, dissimilarity, homogeneity, cov / (si * sj)], axis=-1)
