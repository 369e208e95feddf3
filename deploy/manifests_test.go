package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// object is one decoded manifest document.
type object struct {
	file string
	kind string
	name string
	v    any
}

// newObject returns the Go type a document of apiVersion and kind decodes
// into; nil for kinds this directory should not hold.
func newObject(apiVersion, kind string) any {
	switch apiVersion + " " + kind {
	case "v1 Namespace":
		return &corev1.Namespace{}
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}
	case "v1 Secret":
		return &corev1.Secret{}
	case "batch/v1 Job":
		return &batchv1.Job{}
	case "apps/v1 DaemonSet":
		return &appsv1.DaemonSet{}
	case "tekton.dev/v1 Task":
		return &tektonTask{}
	case "kubevirt.io/v1 VirtualMachine":
		return &virtualMachine{}
	}
	return nil
}

// decode decodes a YAML stream strictly, as the API server does
// (kubectl apply --validate=strict): duplicate fields, unknown fields and
// fields in the wrong case are errors.
func decode(file string, data []byte) ([]object, error) {
	var out []object
	for i, doc := range splitDocuments(data) {
		j, err := yaml.YAMLToJSONStrict(doc)
		if err != nil {
			return nil, fmt.Errorf("%s document %d: %w", file, i, err)
		}
		var tm metav1.TypeMeta
		if err := kjson.UnmarshalCaseSensitivePreserveInts(j, &tm); err != nil {
			return nil, fmt.Errorf("%s document %d: %w", file, i, err)
		}
		v := newObject(tm.APIVersion, tm.Kind)
		if v == nil {
			return nil, fmt.Errorf("%s document %d: apiVersion %q kind %q is not one this test knows", file, i, tm.APIVersion, tm.Kind)
		}
		strict, err := kjson.UnmarshalStrict(j, v, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
		if err != nil {
			return nil, fmt.Errorf("%s document %d (%s): %w", file, i, tm.Kind, err)
		}
		if len(strict) > 0 {
			return nil, fmt.Errorf("%s document %d (%s): %w", file, i, tm.Kind, errors.Join(strict...))
		}
		var meta struct {
			Metadata metav1.ObjectMeta `json:"metadata"`
		}
		if err := kjson.UnmarshalCaseSensitivePreserveInts(j, &meta); err != nil || meta.Metadata.Name == "" {
			return nil, fmt.Errorf("%s document %d (%s) has no metadata.name", file, i, tm.Kind)
		}
		out = append(out, object{file: file, kind: tm.Kind, name: meta.Metadata.Name, v: v})
	}
	return out, nil
}

// splitDocuments splits a YAML stream at its "---" lines, dropping
// documents that hold only comments.
func splitDocuments(data []byte) [][]byte {
	var docs [][]byte
	for _, d := range bytes.Split(append([]byte("\n"), data...), []byte("\n---\n")) {
		empty := true
		for _, line := range strings.Split(string(d), "\n") {
			if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "#") {
				empty = false
			}
		}
		if !empty {
			docs = append(docs, d)
		}
	}
	return docs
}

// manifests decodes every YAML file under this directory.
func manifests(t *testing.T) []object {
	t.Helper()
	var all []object
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".yaml") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		objs, err := decode(path, b)
		all = append(all, objs...)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return all
}

func find[T any](t *testing.T, objs []object, name string) T {
	t.Helper()
	for _, o := range objs {
		if v, ok := o.v.(T); ok && o.name == name {
			return v
		}
	}
	var zero T
	t.Fatalf("no %T named %s in deploy/", zero, name)
	return zero
}

// TestManifests decodes every manifest strictly and checks that they fit
// together: each file holds what it should, and the parts that name each
// other (volumes, Secrets, ConfigMap keys, paths, the store's root) agree.
func TestManifests(t *testing.T) {
	t.Parallel()
	objs := manifests(t)
	want := map[string][]string{
		"convert/namespace.yaml":       {"Namespace/lazydisk"},
		"convert/secrets.example.yaml": {"Secret/lazydisk-registry", "Secret/lazydisk-signing"},
		"convert/job.yaml":             {"ConfigMap/lazydisk-sources", "Job/lazydisk-convert"},
		"tekton/task.yaml":             {"Task/lazydisk-convert"},
		"store/daemonset.yaml":         {"Namespace/lazydisk-store", "ConfigMap/lazydisk-store-storage-conf", "DaemonSet/lazydisk-store"},
		"kubevirt/vm.yaml":             {"VirtualMachine/fedora-lazy"},
	}
	got := map[string][]string{}
	for _, o := range objs {
		got[o.file] = append(got[o.file], o.kind+"/"+o.name)
	}
	for f, w := range want {
		if !slices.Equal(got[f], w) {
			t.Errorf("%s holds %v, want %v", f, got[f], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("deploy/ holds %v, want the files %v", got, want)
	}

	t.Run("job", func(t *testing.T) {
		job := find[*batchv1.Job](t, objs, "lazydisk-convert")
		sources := find[*corev1.ConfigMap](t, objs, "lazydisk-sources")
		pairs := 0
		for _, line := range strings.Split(sources.Data["sources.txt"], "\n") {
			if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
				if n := len(strings.Fields(l)); n != 2 {
					t.Errorf("sources.txt line %q has %d fields, want SOURCE DESTINATION", l, n)
				}
				pairs++
			}
		}
		s := job.Spec
		if s.CompletionMode == nil || *s.CompletionMode != batchv1.IndexedCompletion || s.Completions == nil || int(*s.Completions) != pairs {
			t.Errorf("the Job is %v with %v completions; want Indexed with one per pair of sources.txt (%d)", s.CompletionMode, s.Completions, pairs)
		}
		pod := s.Template.Spec
		checkPod(t, pod, objs)
		c := pod.Containers[0]
		for _, a := range []string{"--skip-if-converted", "--from-list=/etc/lazydisk/sources.txt", "--sign-key=/var/run/lazydisk/signing/cosign.key"} {
			if !slices.Contains(c.Args, a) {
				t.Errorf("the Job's args %v lack %s", c.Args, a)
			}
		}
		if mountOf(c, "sources") != "/etc/lazydisk" || mountOf(c, "signing") != "/var/run/lazydisk/signing" || mountOf(c, "docker-config") != envOf(c, "DOCKER_CONFIG") {
			t.Errorf("the Job's mounts %+v do not match its args and DOCKER_CONFIG", c.VolumeMounts)
		}
		if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot {
			t.Errorf("the Job's pod should run as non-root with a read-only root file system")
		}
		for _, v := range pod.Volumes {
			// Secret files belong to root and the fsGroup: the key must be
			// readable by the group (0440), not only by root (0400).
			if v.Secret != nil && v.Secret.DefaultMode != nil && *v.Secret.DefaultMode != 0o440 {
				t.Errorf("volume %s: mode %#o, want 0440 (readable by the fsGroup the pod runs as)", v.Name, *v.Secret.DefaultMode)
			}
		}
	})

	t.Run("tekton", func(t *testing.T) {
		task := find[*tektonTask](t, objs, "lazydisk-convert")
		params := map[string]bool{}
		for _, p := range task.Spec.Params {
			params[p.Name] = true
		}
		workspaces := map[string]bool{}
		for _, w := range task.Spec.Workspaces {
			workspaces[w.Name] = true
		}
		results := map[string]bool{}
		for _, r := range task.Spec.Results {
			results[r.Name] = true
		}
		for _, st := range task.Spec.Steps {
			text := strings.Join(append(append([]string{}, st.Args...), st.Command...), " ")
			for _, e := range st.Env {
				text += " " + e.Value
			}
			// Every $(params.X), $(workspaces.X.path), $(results.X.path) is declared.
			for _, ref := range substitutions(text) {
				kind, rest, _ := strings.Cut(ref, ".")
				name, _, _ := strings.Cut(rest, ".")
				ok := map[string]map[string]bool{"params": params, "workspaces": workspaces, "results": results}[kind][name]
				if !ok {
					t.Errorf("step %s uses $(%s), which the Task does not declare", st.Name, ref)
				}
			}
			for _, m := range st.VolumeMounts {
				if !slices.ContainsFunc(task.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == m.Name }) {
					t.Errorf("step %s mounts %s, which the Task does not declare", st.Name, m.Name)
				}
			}
		}
	})

	t.Run("store", func(t *testing.T) {
		ds := find[*appsv1.DaemonSet](t, objs, "lazydisk-store")
		conf := find[*corev1.ConfigMap](t, objs, "lazydisk-store-storage-conf")
		pod := ds.Spec.Template.Spec
		checkPod(t, pod, objs)
		store := pod.Containers[0]
		root := ""
		for _, a := range store.Args {
			if v, ok := strings.CutPrefix(a, "--root="); ok {
				root = v
			}
		}
		if len(store.Args) == 0 || store.Args[0] != "store" || root == "" {
			t.Fatalf("the store runs %v, want store --root=DIR", store.Args)
		}
		if !strings.Contains(conf.Data["lazydisk.conf"], `additionallayerstores = ["`+root+`:ref"]`) {
			t.Errorf("the storage.conf drop-in %q does not name the store's root %s with :ref", conf.Data["lazydisk.conf"], root)
		}
		if sc := store.SecurityContext; sc == nil || sc.Privileged == nil || !*sc.Privileged {
			t.Errorf("the store must be privileged (FUSE, Bidirectional propagation)")
		}
		var bidi, fuse bool
		for _, m := range store.VolumeMounts {
			v := volumeOf(pod, m.Name)
			switch {
			case m.MountPropagation != nil && *m.MountPropagation == corev1.MountPropagationBidirectional:
				bidi = v.HostPath != nil && strings.HasPrefix(root, m.MountPath+"/") && strings.HasPrefix(root, v.HostPath.Path+"/")
			case m.MountPath == "/dev/fuse":
				fuse = v.HostPath != nil && v.HostPath.Path == "/dev/fuse" && v.HostPath.Type != nil && *v.HostPath.Type == corev1.HostPathCharDev
			}
		}
		if !bidi || !fuse {
			t.Errorf("the store needs its root under a Bidirectional hostPath mount at the same path (%v) and /dev/fuse as a CharDevice (%v)", bidi, fuse)
		}
		var probed bool
		for _, c := range pod.Containers {
			if p := c.ReadinessProbe; p != nil && p.Exec != nil && strings.Contains(strings.Join(p.Exec.Command, " "), root) {
				probed = mountOf(c, "store") != "" && strings.Contains(strings.Join(p.Exec.Command, " "), "fuse")
			}
		}
		if !probed {
			t.Errorf("no readiness probe checks the FUSE mount at %s", root)
		}
	})

	t.Run("kubevirt", func(t *testing.T) {
		vm := find[*virtualMachine](t, objs, "fedora-lazy")
		spec := vm.Spec.Template.Spec
		for _, d := range spec.Domain.Devices.Disks {
			if !slices.ContainsFunc(spec.Volumes, func(v vmVolume) bool {
				return v.Name == d.Name
			}) {
				t.Errorf("disk %s has no volume", d.Name)
			}
		}
		if len(spec.Volumes) == 0 || spec.Volumes[0].ContainerDisk == nil || spec.Volumes[0].ContainerDisk.Image == "" {
			t.Errorf("the first volume should be the lazydisk containerDisk")
		}
	})
}

// checkPod checks that a pod's mounts name its volumes and that the
// ConfigMaps and Secrets it reads are in deploy/ (optional ones may not be).
func checkPod(t *testing.T, pod corev1.PodSpec, objs []object) {
	t.Helper()
	for _, c := range append(append([]corev1.Container{}, pod.InitContainers...), pod.Containers...) {
		for _, m := range c.VolumeMounts {
			if volumeOf(pod, m.Name).Name == "" {
				t.Errorf("container %s mounts %s, which the pod does not declare", c.Name, m.Name)
			}
		}
		for _, e := range c.Env {
			if r := e.ValueFrom; r != nil && r.SecretKeyRef != nil {
				s := find[*corev1.Secret](t, objs, r.SecretKeyRef.Name)
				if _, ok := s.StringData[r.SecretKeyRef.Key]; !ok {
					t.Errorf("container %s reads key %s of Secret %s, which it lacks", c.Name, r.SecretKeyRef.Key, s.Name)
				}
			}
		}
	}
	for _, v := range pod.Volumes {
		switch {
		case v.ConfigMap != nil:
			find[*corev1.ConfigMap](t, objs, v.ConfigMap.Name)
		case v.Secret != nil && (v.Secret.Optional == nil || !*v.Secret.Optional):
			s := find[*corev1.Secret](t, objs, v.Secret.SecretName)
			for _, it := range v.Secret.Items {
				if _, ok := s.StringData[it.Key]; !ok {
					t.Errorf("volume %s takes key %s of Secret %s, which it lacks", v.Name, it.Key, s.Name)
				}
			}
		}
	}
}

func volumeOf(pod corev1.PodSpec, name string) corev1.Volume {
	for _, v := range pod.Volumes {
		if v.Name == name {
			return v
		}
	}
	return corev1.Volume{}
}

func mountOf(c corev1.Container, volume string) string {
	for _, m := range c.VolumeMounts {
		if m.Name == volume {
			return m.MountPath
		}
	}
	return ""
}

func envOf(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

// substitutions returns the X of every $(X) in s.
func substitutions(s string) []string {
	var out []string
	for {
		i := strings.Index(s, "$(")
		if i < 0 {
			return out
		}
		j := strings.IndexByte(s[i:], ')')
		if j < 0 {
			return out
		}
		out = append(out, s[i+2:i+j])
		s = s[i+j:]
	}
}

// TestMisspelledFieldFails proves the decoding is strict: each manifest,
// with one field misspelled (or in the wrong case, which encoding/json
// would accept), duplicated, or of an unknown kind, fails to decode and the
// error names the field.
func TestMisspelledFieldFails(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		file, from, to, want string
	}{
		{"convert/job.yaml", "completionMode: Indexed", "completionMod: Indexed", `unknown field "spec.completionMod"`},
		{"convert/job.yaml", "readOnlyRootFilesystem: true", "readOnlyRootFileSystem: true", "readOnlyRootFileSystem"},
		{"convert/job.yaml", "      restartPolicy: Never\n", "      restartPolicy: Never\n      restartPolicy: OnFailure\n", "restartPolicy"},
		{"store/daemonset.yaml", "mountPropagation: Bidirectional", "mountPropogation: Bidirectional", `unknown field "spec.template.spec.containers[0].volumeMounts[0].mountPropogation"`},
		{"store/daemonset.yaml", "readinessProbe:", "readynessProbe:", "readynessProbe"},
		{"tekton/task.yaml", "computeResources:", "resources:", `unknown field "spec.steps[0].resources"`},
		{"kubevirt/vm.yaml", "containerDisk:", "containerdisk:", "containerdisk"},
		{"kubevirt/vm.yaml", "kind: VirtualMachine", "kind: VirtualMachineInstance", "is not one this test knows"},
		{"convert/secrets.example.yaml", "stringData:", "stringdata:", "stringdata"},
	} {
		t.Run(tc.file+"/"+tc.to, func(t *testing.T) {
			t.Parallel()
			b, err := os.ReadFile(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := decode(tc.file, b); err != nil {
				t.Fatalf("the manifest as it is fails: %v", err)
			}
			bad := strings.Replace(string(b), tc.from, tc.to, 1)
			if bad == string(b) {
				t.Fatalf("%s has no %q to change", tc.file, tc.from)
			}
			_, err = decode(tc.file, []byte(bad))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("with %q: error %v, want one naming %s", tc.to, err, tc.want)
			}
		})
	}
}

// TestLazydiskFlags runs the lazydisk CLI of this checkout and checks that
// every flag the Job and the Task give `lazydisk convert` exists. The
// store's flags are checked when this checkout has the store command.
func TestLazydiskFlags(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command to build lazydisk with")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "lazydisk")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/lazydisk")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building lazydisk: %v\n%s", err, out)
	}
	help := func(cmd string) (string, error) {
		out, err := exec.CommandContext(ctx, bin, cmd, "--help").CombinedOutput()
		return string(out), err
	}
	objs := manifests(t)
	uses := map[string][]string{}
	job := find[*batchv1.Job](t, objs, "lazydisk-convert")
	uses["job"] = job.Spec.Template.Spec.Containers[0].Args
	uses["task"] = find[*tektonTask](t, objs, "lazydisk-convert").Spec.Steps[0].Args
	uses["store"] = find[*appsv1.DaemonSet](t, objs, "lazydisk-store").Spec.Template.Spec.Containers[0].Args
	for what, args := range uses {
		text, err := help(args[0])
		if err != nil && what == "store" {
			t.Logf("this lazydisk has no store command yet (%v): the DaemonSet's flags %v are unchecked", err, args[1:])
			continue
		}
		if err != nil {
			t.Fatalf("lazydisk %s --help: %v\n%s", args[0], err, text)
		}
		for _, a := range args[1:] {
			name, _, _ := strings.Cut(a, "=")
			if !strings.HasPrefix(name, "--") || strings.Contains(name, "$(") {
				continue
			}
			if !strings.Contains(text, "  "+name+" ") && !strings.Contains(text, " "+name+" ") {
				t.Errorf("the %s gives lazydisk %s %s, which its --help does not list", what, args[0], name)
			}
		}
	}
	// --$(params.format) takes the Task's format enum: both must be flags.
	text, _ := help("convert")
	for _, p := range find[*tektonTask](t, objs, "lazydisk-convert").Spec.Params {
		for _, e := range p.Enum {
			if p.Name == "format" && !strings.Contains(text, "--"+e+" ") {
				t.Errorf("the Task's format %q is not a lazydisk convert flag", e)
			}
		}
	}
}
