//! The end-to-end test harness: a real etcd + kube-apiserver on loopback, cloud emulators, and disk
//! image builders, started by the tests themselves.
