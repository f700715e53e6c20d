package kubesphere

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/ksboot/ksboot/bootstrap/addons/kube"
)

// IssueFile is where the banner goes under the agent's root, for the console login prompt
// (agetty shows /etc/issue.d/*.issue).
const IssueFile = "etc/issue.d/ksboot-kubesphere.issue"

// Banner is what the agent shows once KubeSphere is up, in KubeKey's words.
type Banner struct {
	Version  string
	Console  string // http://<first control-plane address>:30880
	Account  string
	Password string
	// CustomPassword is true when the password came from spec.kubesphere.configuration
	// rather than KubeSphere's documented default.
	CustomPassword bool
}

// NewBanner makes the banner of the parameters.
func NewBanner(p Params) Banner {
	return Banner{
		Version:        p.Version,
		Console:        "http://" + net.JoinHostPort(p.ConsoleAddress, strconv.Itoa(p.ConsolePort)),
		Account:        AdminAccount,
		Password:       p.AdminPassword,
		CustomPassword: p.AdminPassword != DefaultAdminPassword,
	}
}

// String is the banner with the password, for the agent's console output and journal.
func (b Banner) String() string { return b.text(b.Password) }

// Issue is the banner for /etc/issue.d, which anyone at the console can read before logging
// in: KubeSphere's documented default password is shown (it must be changed anyway), a
// password the operator chose is not.
func (b Banner) Issue() string {
	pw := b.Password
	if b.CustomPassword {
		pw = "(as set in spec.kubesphere.configuration.authentication.adminPassword)"
	}
	// agetty expands backslash escapes in issue files.
	return strings.ReplaceAll(b.text(pw), `\`, `\\`)
}

func (b Banner) text(password string) string {
	const rule = "#####################################################"
	var s strings.Builder
	fmt.Fprintf(&s, "%s\n###              Welcome to KubeSphere!           ###\n%s\n\n", rule, rule)
	fmt.Fprintf(&s, "Console: %s\nAccount: %s\nPassword: %s\n\n", b.Console, b.Account, password)
	s.WriteString("NOTES:\n" +
		"  1. After you log into the console, please check the\n" +
		"     monitoring status of service components in\n" +
		"     \"Cluster Management\". If any service is not\n" +
		"     ready, please wait patiently until all components\n" +
		"     are up and running.\n" +
		"  2. Please change the default password after login.\n\n")
	fmt.Fprintf(&s, "%s\nKubeSphere %s, installed by ksboot\n%s\n", rule, b.Version, rule)
	return s.String()
}

// WriteIssue writes the banner to <root>/etc/issue.d/ksboot-kubesphere.issue (0644, atomic)
// and returns the path.
func WriteIssue(root string, b Banner) (string, error) {
	p := filepath.Join(root, IssueFile)
	if err := kube.WriteFile(p, []byte(b.Issue()), 0o644); err != nil {
		return "", err
	}
	return p, nil
}
