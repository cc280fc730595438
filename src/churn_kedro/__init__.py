"""churn-kedro: insurance churn modelling as a Kedro project."""

import os

__version__ = "0.1.0"

# scikit-learn's histogram gradient boosting runs on OpenMP, whose threads spin while they
# wait: on a machine whose cores are shared (CI, a laptop busy with other work) a fit then
# ran 12x slower than on one thread. Passive waiting costs nothing on an idle machine. Set
# here, before scikit-learn loads its OpenMP runtime; an explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")
