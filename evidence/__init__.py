"""The evidence a pipeline run leaves, read back: MLMD lineage, TFMA's evaluation results, the gates' records,
the fairness tables, and the governance reports built from them alone. Below the components: no TFX component
is imported here, and TensorFlow and TFMA load only when a function needs them."""
