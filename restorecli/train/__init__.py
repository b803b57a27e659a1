"""Training: recipes, datasets, the training loop and model export.

The synthetic degradations (:mod:`restorecli.data.degradations`) are pure numpy/OpenCV so the
``restore degrade`` command and the on-the-fly training data share one implementation and one seeding.
"""
