package image

import (
	"errors"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func TestLimits(t *testing.T) {
	t.Parallel()
	big := map[string]string{"k": strings.Repeat("x", MaxAnnotationBytes)}
	ok := map[string]string{"k": strings.Repeat("x", MaxAnnotationBytes-1)}
	for _, tt := range []struct {
		name string
		err  error
		want bool
	}{
		{"manifest of MaxLayers layers", CheckManifest(&v1.Manifest{Layers: make([]v1.Descriptor, MaxLayers)}), false},
		{"manifest of one layer more", CheckManifest(&v1.Manifest{Layers: make([]v1.Descriptor, MaxLayers+1)}), true},
		{"manifest annotations at the limit", CheckManifest(&v1.Manifest{Annotations: ok}), false},
		{"manifest annotations over it", CheckManifest(&v1.Manifest{Annotations: big}), true},
		{"config annotations over it", CheckManifest(&v1.Manifest{Config: v1.Descriptor{Annotations: big}}), true},
		{"layer annotations over it", CheckManifest(&v1.Manifest{Layers: []v1.Descriptor{{}, {Annotations: big}}}), true},
		{"index of MaxIndexManifests", CheckIndex(&v1.IndexManifest{Manifests: make([]v1.Descriptor, MaxIndexManifests)}), false},
		{"index of one more", CheckIndex(&v1.IndexManifest{Manifests: make([]v1.Descriptor, MaxIndexManifests+1)}), true},
		{"index annotations over it", CheckIndex(&v1.IndexManifest{Annotations: big}), true},
		{"index entry annotations over it", CheckIndex(&v1.IndexManifest{Manifests: []v1.Descriptor{{Annotations: big}}}), true},
	} {
		if got := errors.Is(tt.err, ErrLimit); got != tt.want || (tt.err != nil) != tt.want {
			t.Errorf("%s: %v", tt.name, tt.err)
		}
	}
}
