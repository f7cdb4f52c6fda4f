"""``python -m microseg.zoo train nuclei|grains`` trains a built-in model."""

from __future__ import annotations

from microseg.zoo.train_builtin import main

raise SystemExit(main())
