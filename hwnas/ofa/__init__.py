"""Once-for-All interop: import OFA's published MobileNetV3 supernets and accuracy predictors as hwnas runs."""
