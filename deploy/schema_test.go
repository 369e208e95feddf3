package deploy

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Neither Tekton's Go module (github.com/tektoncd/pipeline, which links
// knative and the whole Kubernetes client) nor KubeVirt's (kubevirt.io/api)
// is available from the module proxy here, so the Task and the
// VirtualMachine are decoded, as strictly, into the subset of their API
// types below: the field names and JSON tags copied from tekton.dev/v1
// (pkg/apis/pipeline/v1: Task, TaskSpec, ParamSpec, WorkspaceDeclaration,
// TaskResult, Step) and kubevirt.io/v1 (VirtualMachine, VirtualMachineSpec,
// VirtualMachineInstanceSpec, DomainSpec, Disk, Volume, ...), for the fields
// these manifests may use. Upstream types embed the same k8s.io/api types
// (EnvVar, VolumeMount, SecurityContext, ResourceRequirements, Volume) used
// here. A field outside this subset fails the test as unknown: add it here
// from upstream's types when a manifest needs it.

type tektonTask struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		DisplayName string `json:"displayName,omitempty"`
		Description string `json:"description,omitempty"`
		Params      []struct {
			Name        string   `json:"name"`
			Type        string   `json:"type,omitempty"`
			Description string   `json:"description,omitempty"`
			Default     *string  `json:"default,omitempty"`
			Enum        []string `json:"enum,omitempty"`
		} `json:"params,omitempty"`
		Workspaces []struct {
			Name        string `json:"name"`
			Description string `json:"description,omitempty"`
			MountPath   string `json:"mountPath,omitempty"`
			ReadOnly    bool   `json:"readOnly,omitempty"`
			Optional    bool   `json:"optional,omitempty"`
		} `json:"workspaces,omitempty"`
		Results []struct {
			Name        string `json:"name"`
			Type        string `json:"type,omitempty"`
			Description string `json:"description,omitempty"`
		} `json:"results,omitempty"`
		Volumes []corev1.Volume `json:"volumes,omitempty"`
		Steps   []tektonStep    `json:"steps"`
	} `json:"spec"`
}

type tektonStep struct {
	Name             string                      `json:"name"`
	Image            string                      `json:"image,omitempty"`
	Command          []string                    `json:"command,omitempty"`
	Args             []string                    `json:"args,omitempty"`
	WorkingDir       string                      `json:"workingDir,omitempty"`
	Env              []corev1.EnvVar             `json:"env,omitempty"`
	ComputeResources corev1.ResourceRequirements `json:"computeResources,omitempty"`
	VolumeMounts     []corev1.VolumeMount        `json:"volumeMounts,omitempty"`
	SecurityContext  *corev1.SecurityContext     `json:"securityContext,omitempty"`
	Script           string                      `json:"script,omitempty"`
	OnError          string                      `json:"onError,omitempty"`
}

type virtualMachine struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		RunStrategy string `json:"runStrategy,omitempty"`
		Running     *bool  `json:"running,omitempty"`
		Template    struct {
			ObjectMeta metav1.ObjectMeta `json:"metadata,omitempty"`
			Spec       vmiSpec           `json:"spec"`
		} `json:"template"`
	} `json:"spec"`
}

type vmiSpec struct {
	NodeSelector                  map[string]string `json:"nodeSelector,omitempty"`
	TerminationGracePeriodSeconds *int64            `json:"terminationGracePeriodSeconds,omitempty"`
	Domain                        struct {
		CPU *struct {
			Cores   uint32 `json:"cores,omitempty"`
			Sockets uint32 `json:"sockets,omitempty"`
			Threads uint32 `json:"threads,omitempty"`
		} `json:"cpu,omitempty"`
		Memory *struct {
			Guest *resource.Quantity `json:"guest,omitempty"`
		} `json:"memory,omitempty"`
		Resources *struct {
			Requests corev1.ResourceList `json:"requests,omitempty"`
			Limits   corev1.ResourceList `json:"limits,omitempty"`
		} `json:"resources,omitempty"`
		Devices struct {
			Disks []struct {
				Name      string `json:"name"`
				BootOrder *uint  `json:"bootOrder,omitempty"`
				Disk      *struct {
					Bus      string `json:"bus,omitempty"`
					ReadOnly bool   `json:"readonly,omitempty"`
				} `json:"disk,omitempty"`
			} `json:"disks,omitempty"`
			Interfaces []struct {
				Name       string    `json:"name"`
				Model      string    `json:"model,omitempty"`
				Masquerade *struct{} `json:"masquerade,omitempty"`
				Bridge     *struct{} `json:"bridge,omitempty"`
			} `json:"interfaces,omitempty"`
		} `json:"devices"`
	} `json:"domain"`
	Networks []struct {
		Name string    `json:"name"`
		Pod  *struct{} `json:"pod,omitempty"`
	} `json:"networks,omitempty"`
	Volumes []vmVolume `json:"volumes,omitempty"`
}

type vmVolume struct {
	Name          string `json:"name"`
	ContainerDisk *struct {
		Image           string            `json:"image"`
		ImagePullSecret string            `json:"imagePullSecret,omitempty"`
		Path            string            `json:"path,omitempty"`
		ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy,omitempty"`
	} `json:"containerDisk,omitempty"`
	CloudInitNoCloud *struct {
		UserData string `json:"userData,omitempty"`
	} `json:"cloudInitNoCloud,omitempty"`
}
