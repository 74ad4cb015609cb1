package broker

import (
	"strings"
	"testing"
)

// TestWebhookTemplateVariables: every variable the Pact Broker documents
// is substituted (empty when the event has no value for it), the commit
// statuses follow the verification's outcome, URLs are query-escaped, and
// only unknown names stay as written.
func TestWebhookTemplateVariables(t *testing.T) {
	names := []string{"pactUrl", "verificationResultUrl", "consumerVersionNumber", "consumerVersionTags", "consumerVersionBranch",
		"consumerVersionDescriptions", "providerVersionNumber", "providerVersionTags", "providerVersionBranch", "providerVersionDescriptions",
		"consumerName", "providerName", "consumerLabels", "providerLabels", "buildUrl", "currentlyDeployedProviderVersionNumber",
		"githubVerificationStatus", "bitbucketVerificationStatus", "azureDevOpsVerificationStatus", "gitlabVerificationStatus", "eventName"}
	var all strings.Builder
	for _, n := range names {
		all.WriteString(n + "=${pactbroker." + n + "};")
	}
	all.WriteString("x=${pactbroker.noSuchThing}")
	tests := []struct {
		event string
		ctx   map[string]string
		want  []string
	}{
		{EventContractPublished, map[string]string{"consumerName": "web", "providerName": "api", "consumerVersionNumber": "w1",
			"consumerVersionBranch": "main", "consumerVersionTags": "prod, eu", "buildUrl": "http://ci/1", "pactPath": "/pacts/provider/api/consumer/web/pact-version/abc"},
			[]string{"consumerVersionBranch=main;", "consumerVersionTags=prod, eu;", "buildUrl=http://ci/1;", "pactUrl=http://broker/pacts/provider/api/consumer/web/pact-version/abc;",
				"githubVerificationStatus=pending;", "bitbucketVerificationStatus=INPROGRESS;", "providerVersionBranch=;", "eventName=contract_published;"}},
		{EventProviderVerificationSucceeded, map[string]string{"providerVersionNumber": "a1", "providerVersionBranch": "main", "providerVersionTags": "prod",
			"success": "true", "verificationResultPath": "/pacts/provider/api/consumer/web/pact-version/abc/verification-results/7"},
			[]string{"providerVersionBranch=main;", "providerVersionTags=prod;", "githubVerificationStatus=success;", "bitbucketVerificationStatus=SUCCESSFUL;",
				"azureDevOpsVerificationStatus=succeeded;", "gitlabVerificationStatus=success;", "verificationResultUrl=http://broker/pacts/provider/api/consumer/web/pact-version/abc/verification-results/7;"}},
		{EventProviderVerificationFailed, map[string]string{"success": "false"},
			[]string{"githubVerificationStatus=failure;", "bitbucketVerificationStatus=FAILED;", "azureDevOpsVerificationStatus=failed;", "gitlabVerificationStatus=failed;"}},
	}
	for _, tc := range tests {
		vars := templateVars(WebhookDelivery{Event: tc.event, Context: tc.ctx}, "http://broker/")
		got := render(all.String(), vars, false)
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: %q lacks %q", tc.event, got, w)
			}
		}
		if strings.Count(got, "${pactbroker.") != 1 || !strings.HasSuffix(got, "x=${pactbroker.noSuchThing}") {
			t.Errorf("%s: variables left as written: %q", tc.event, got)
		}
		for _, internal := range []string{"pactPath", "verificationResultPath", "success"} {
			if _, ok := vars[internal]; ok {
				t.Errorf("%s: the internal %s is a variable", tc.event, internal)
			}
		}
	}
	if got := render("http://ci/?b=${pactbroker.consumerVersionBranch}", map[string]string{"consumerVersionBranch": "feat/a b"}, true); got != "http://ci/?b=feat%2Fa+b" {
		t.Errorf("escaped URL: %q", got)
	}
}
