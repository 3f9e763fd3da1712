"""Other projects' data in and out of paddock's sessions: DonkeyCar tubs (:mod:`trainer.interop.tub`)."""
