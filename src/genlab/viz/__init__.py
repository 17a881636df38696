"""Visualisation: figures and animations of samples, paths, vector fields and training curves.

Every function writes one file and returns its :class:`~pathlib.Path`; matplotlib is imported
lazily (``import genlab.viz`` does not import it) and used without ``pyplot``, so no figure is
left open and no backend or ``rcParams`` setting is changed.
"""

from genlab.viz.conditional import plot_conditional_samples
from genlab.viz.flow import animate_path, plot_trajectories, plot_vector_field
from genlab.viz.loss import plot_loss_curve
from genlab.viz.samples import plot_image_grid, plot_pairs, plot_samples_vs_data, plot_samples_vs_data_images

__all__ = [
    "animate_path",
    "plot_conditional_samples",
    "plot_image_grid",
    "plot_loss_curve",
    "plot_pairs",
    "plot_samples_vs_data",
    "plot_samples_vs_data_images",
    "plot_trajectories",
    "plot_vector_field",
]
