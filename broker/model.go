package broker

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// Pacticipant is an application taking part in contracts: a consumer, a
// provider, or both.
type Pacticipant struct {
	Name       string
	MainBranch string
	CreatedAt  time.Time
}

// Version is one version of a pacticipant, with the branches it was built
// from and its tags.
type Version struct {
	Pacticipant string
	Number      string
	Branches    []string
	Tags        []string
	BuildURL    string
	CreatedAt   time.Time
}

// Contract is one pact handed to Publish, already validated and hashed.
type Contract struct {
	Consumer, Provider string
	// SHA is the content address of the pact (see ContentSHA).
	SHA     string
	Content []byte
	// Merge asks to merge the interactions into a pact already published
	// for this consumer version (onConflict "merge").
	Merge bool
}

// Publication is a consumer version publishing its pacts.
type Publication struct {
	Pacticipant string
	Version     string
	Branch      string
	Tags        []string
	BuildURL    string
	Contracts   []Contract
}

// PublishedContract says what happened to one contract of a Publication.
type PublishedContract struct {
	Consumer, Provider string
	SHA                string
	// NewContent is true when no other consumer version had published this
	// content before.
	NewContent bool
	// Changed is true when this consumer version had published different
	// content for this provider before (it was overwritten or merged).
	Changed bool
}

// PublishResult is what Publish stored.
type PublishResult struct {
	Version   Version
	Contracts []PublishedContract
}

// Pact is a pact version: content published by one or more consumer
// versions.
type Pact struct {
	Consumer, Provider string
	SHA                string
	Content            []byte
	CreatedAt          time.Time
	// ConsumerVersion is the latest consumer version that published it.
	ConsumerVersion string
}

// Verification is one published verification result of a pact version by
// a provider version.
type Verification struct {
	ID                 int64
	Consumer, Provider string
	PactSHA            string
	ProviderVersion    string
	Success            bool
	BuildURL           string
	TestResults        json.RawMessage
	VerifiedBy         json.RawMessage
	VerifiedAt         time.Time
}

// Environment is a place versions are deployed or released to.
type Environment struct {
	UUID        string
	Name        string
	DisplayName string
	Production  bool
	CreatedAt   time.Time
}

// Deployment is a version deployed to (or released in) an environment.
type Deployment struct {
	UUID                string
	Pacticipant         string
	Version             string
	Environment         Environment
	ApplicationInstance string
	// Release is true for a released version (record-release) rather than
	// a deployed one.
	Release bool
	// Current is "currently deployed" for a deployment and "currently
	// supported" for a release.
	Current   bool
	CreatedAt time.Time
	EndedAt   time.Time
}

// Selector picks versions of one pacticipant in a matrix query.
type Selector struct {
	Pacticipant string
	// Version is an exact version number; otherwise the latest version
	// (optionally with Tag, on Branch or on the main branch), or the
	// versions currently in Environment.
	Version     string
	Latest      bool
	Tag         string
	Branch      string
	MainBranch  bool
	Environment string
}

// Target says which versions of the other pacticipants a matrix query is
// answered against: those in an environment, the latest with a tag, the
// head of their main branch, or their latest. The zero Target means every
// version: the rows are the published verification results.
type Target struct {
	Environment string
	Tag         string
	MainBranch  bool
	Latest      bool
}

// IsZero reports whether the target is "every version".
func (t Target) IsZero() bool { return t == Target{} }

// MatrixQuery is a parsed /matrix request.
type MatrixQuery struct {
	Selectors []Selector
	Target    Target
	// LatestBy is "cvpv" (one row per consumer and provider version) or
	// "cvp" (one row per consumer version and provider), or empty.
	LatestBy string
	Ignore   []Selector
}

// MatrixRow is one integration between a consumer version and a provider
// version (nil when no version of the provider qualifies).
type MatrixRow struct {
	Consumer        string
	ConsumerVersion Version
	Provider        string
	ProviderVersion *Version
	PactSHA         string
	PactCreatedAt   time.Time
	Verification    *Verification
	Ignored         bool
}

// MatrixResult is what the store finds for a matrix query; Summarize turns
// it into the deployable answer.
type MatrixResult struct {
	Rows []MatrixRow
	// Unresolved lists the selectors that matched no version.
	Unresolved []Selector
}

// ConsumerVersionSelector is one selector of a pacts-for-verification
// request.
type ConsumerVersionSelector struct {
	MainBranch         bool   `json:"mainBranch,omitempty"`
	Branch             string `json:"branch,omitempty"`
	AllBranches        bool   `json:"-"` // {"branch": true, "latest": true}
	MatchingBranch     bool   `json:"matchingBranch,omitempty"`
	FallbackBranch     string `json:"fallbackBranch,omitempty"`
	Tag                string `json:"tag,omitempty"`
	FallbackTag        string `json:"fallbackTag,omitempty"`
	Latest             *bool  `json:"latest,omitempty"`
	Deployed           bool   `json:"deployed,omitempty"`
	Released           bool   `json:"released,omitempty"`
	DeployedOrReleased bool   `json:"deployedOrReleased,omitempty"`
	Environment        string `json:"environment,omitempty"`
	Consumer           string `json:"consumer,omitempty"`
}

// ForVerificationQuery is a parsed pacts-for-verification request.
type ForVerificationQuery struct {
	Selectors             []ConsumerVersionSelector
	ProviderVersionBranch string
	ProviderVersionTags   []string
	IncludePendingStatus  bool
	// IncludeWIPPactsSince, when not zero, adds work-in-progress pacts
	// published since then.
	IncludeWIPPactsSince time.Time
}

// SelectedBy is one reason a pact was selected for verification.
type SelectedBy struct {
	Selector        ConsumerVersionSelector
	ConsumerVersion string
	// Branch or Tag or Environment the selector resolved through.
	Branch, Tag, Environment string
}

// VerifiablePact is one pact version a provider should verify.
type VerifiablePact struct {
	Consumer, Provider string
	SHA                string
	SelectedBy         []SelectedBy
	Pending            bool
	WIP                bool
}

// Store keeps the broker's state. Implementations must be safe for
// concurrent use; broker/sqlstore is the one flotilla ships.
//
// Methods return ErrNotFound (wrapped) for a missing pacticipant, version,
// pact, environment or deployment, ErrConflict for a publication whose
// content differs from what this consumer version already published, and
// ErrInvalid for requests the data makes impossible.
type Store interface {
	Publish(ctx context.Context, p Publication, allowModification bool) (PublishResult, error)
	Pacticipants(ctx context.Context) ([]Pacticipant, error)
	Pacticipant(ctx context.Context, name string) (Pacticipant, error)
	// SetMainBranch records a pacticipant's main branch, creating it.
	SetMainBranch(ctx context.Context, pacticipant, branch string) (Pacticipant, error)
	Version(ctx context.Context, pacticipant, number string) (Version, error)
	LatestVersion(ctx context.Context, pacticipant string) (Version, error)
	// EnsureVersion creates the version (and pacticipant) when missing and
	// adds the branch and tag when not empty.
	EnsureVersion(ctx context.Context, pacticipant, number, branch, tag, buildURL string) (Version, error)
	Pact(ctx context.Context, provider, consumer, sha string) (Pact, error)
	PactForConsumerVersion(ctx context.Context, provider, consumer, version string) (Pact, error)
	// LatestPacts returns the latest pact of each consumer of the provider,
	// or of every integration when provider is empty.
	LatestPacts(ctx context.Context, provider string) ([]Pact, error)
	AddVerification(ctx context.Context, v Verification) (Verification, error)
	Verification(ctx context.Context, id int64) (Verification, error)
	Environments(ctx context.Context) ([]Environment, error)
	Environment(ctx context.Context, uuidOrName string) (Environment, error)
	CreateEnvironment(ctx context.Context, e Environment) (Environment, error)
	// RecordDeployment records a deployment (or, with release, a release)
	// of a version; a deployment replaces the pacticipant's previous one
	// with the same application instance in that environment.
	RecordDeployment(ctx context.Context, pacticipant, version, envUUID, instance string, release bool) (Deployment, error)
	Deployment(ctx context.Context, uuid string) (Deployment, error)
	// EndDeployment marks a deployment undeployed (or a release
	// unsupported).
	EndDeployment(ctx context.Context, uuid string) (Deployment, error)
	// CurrentDeployments lists what is currently deployed or released in an
	// environment, for one pacticipant when it is not empty.
	CurrentDeployments(ctx context.Context, envUUID, pacticipant string) ([]Deployment, error)
	// Removals: each returns ErrNotFound when there is nothing to remove,
	// and removes what depends on what it removes.
	DeleteTag(ctx context.Context, pacticipant, version, tag string) error
	// BranchVersions lists a branch's version numbers, newest first.
	BranchVersions(ctx context.Context, pacticipant, branch string) ([]string, error)
	// DeleteBranch takes the branch off its versions, keeping them.
	DeleteBranch(ctx context.Context, pacticipant, branch string) error
	UpdateEnvironment(ctx context.Context, e Environment) (Environment, error)
	DeleteEnvironment(ctx context.Context, uuid string) error
	DeleteVersion(ctx context.Context, pacticipant, number string) error
	DeletePacticipant(ctx context.Context, name string) error
	// DeletePactPublication removes what a consumer version published for
	// a provider.
	DeletePactPublication(ctx context.Context, provider, consumer, version string) error
	// BranchPacts lists the pacts for provider that consumer versions on a
	// branch published (each consumer's main branch when branch is empty),
	// newest first per consumer, only the newest with latest; consumer
	// narrows to one consumer.
	BranchPacts(ctx context.Context, provider, consumer, branch string, latest bool) ([]Pact, error)
	Matrix(ctx context.Context, q MatrixQuery) (MatrixResult, error)
	ForVerification(ctx context.Context, provider string, q ForVerificationQuery) ([]VerifiablePact, error)
	// Webhooks: the store queues a delivery for every enabled webhook an
	// event matches in the same transaction as the publication or
	// verification that causes it.
	CreateWebhook(ctx context.Context, w Webhook) (Webhook, error)
	Webhooks(ctx context.Context) ([]Webhook, error)
	Webhook(ctx context.Context, uuid string) (Webhook, error)
	DeleteWebhook(ctx context.Context, uuid string) error
	// Deliveries lists a webhook's deliveries, newest first.
	Deliveries(ctx context.Context, webhookUUID string) ([]WebhookDelivery, error)
	DeliveryQueue
}

// Errors a Store returns, for callers to branch on with errors.Is.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("conflict")
	ErrInvalid  = errors.New("invalid")
)
