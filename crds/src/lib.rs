//! snapsentry's Kubernetes API types, group `snapsentry.io`, version `v1alpha1`.
