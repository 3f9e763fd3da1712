"""Real car hardware: cameras (picamera2, OpenCV USB, a synthetic test pattern), PWM servo + ESC
(gpiozero), optional sensors and the interactive calibration.

Hardware libraries (picamera2, gpiozero pin drivers, smbus2) are imported only when a device is
opened, so this package imports anywhere, and a missing library fails with a message that says
what to install.
"""
