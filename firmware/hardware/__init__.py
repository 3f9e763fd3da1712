"""Real car hardware: cameras (picamera2, OpenCV USB, a synthetic test pattern), servo + ESC on
GPIO PWM (gpiozero) or a PCA9685 board (both on firmware.hardware.pulse), optional sensors and the
interactive calibration.

Hardware libraries (picamera2, gpiozero pin drivers, smbus2) are imported only when a device is
opened, so this package imports anywhere, and a missing library fails with a message that says
what to install.
"""
