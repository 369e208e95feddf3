// Package deploy holds lazydisk's Kubernetes manifests (the conversion Job,
// the Tekton Task, the layer store DaemonSet and a KubeVirt VirtualMachine)
// and the test that decodes each of them strictly into the API types they
// are for. It is a module of its own (deploy/go.mod) so that the product
// module does not link k8s.io/api; it has no code to import.
package deploy
