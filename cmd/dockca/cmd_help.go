package main

import (
	"fmt"
	"sort"
	"strings"

	"github.com/urfave/cli/v2"
)

// newHelpCommand is `dockca help [COMMAND...]`: the same text as
// `dockca COMMAND... --help`. Only the top level has it: below, help and h
// are names (a client may be called help).
func newHelpCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "help",
		Usage:     "show help for dockca or for a command",
		UsageText: "dockca help [COMMAND [SUBCOMMAND]]",
		Action: func(c *cli.Context) error {
			args := c.Args().Slice()
			cmds := c.App.Commands
			for i, a := range args {
				cmd := findCommand(cmds, a)
				if cmd == nil {
					return unknownCommand(cmds, strings.Join(args[:i], " "), a)
				}
				cmds = cmd.Subcommands
			}
			// A fresh app, so that the help printed is exactly what
			// --help prints.
			argv := append(append([]string{c.App.Name}, args...), "--help")
			return newApp(e).RunContext(c.Context, argv)
		},
	}
}

// unknownCommand is the usage error for a command name that does not
// exist under parent ("" for the top level), with the names it is close to.
func unknownCommand(cmds []*cli.Command, parent, name string) error {
	msg := fmt.Sprintf("unknown command %q", name)
	if parent != "" {
		msg += fmt.Sprintf(" for %q", parent)
	}
	if s := suggestCommands(cmds, name); len(s) > 0 {
		q := make([]string, len(s))
		for i, n := range s {
			q[i] = fmt.Sprintf("%q", n)
		}
		msg += "; did you mean " + strings.Join(q, " or ") + "?"
	}
	see := "dockca --help"
	if parent != "" {
		see = "dockca " + parent + " --help"
	}
	return usagef("%s (see '%s')", msg, see)
}

// suggestCommands returns the visible command names within two edits of
// name, or that start with it, as docker's CLI suggests them.
func suggestCommands(cmds []*cli.Command, name string) []string {
	var out []string
	for _, c := range cmds {
		if c.Hidden {
			continue
		}
		for _, n := range c.Names() {
			if editDistance(strings.ToLower(name), n) <= 2 || (len(name) > 1 && strings.HasPrefix(n, strings.ToLower(name))) {
				out = append(out, n)
				break
			}
		}
	}
	sort.Strings(out)
	return out
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

// The scripts ask dockca itself for candidates (urfave/cli's
// --generate-bash-completion protocol), so they stay right as commands
// change. The zsh script is urfave/cli's with the program name filled in;
// the bash one is written here because urfave's needs the bash-completion
// package and evals the command line.
const bashCompletion = `# bash completion for dockca: source <(dockca completion bash)
_dockca_complete() {
  COMPREPLY=()
  local cur="${COMP_WORDS[COMP_CWORD]}"
  local -a words=("${COMP_WORDS[@]:0:COMP_CWORD}")
  local opts
  # The words are passed as they are, never eval'd: completing must not
  # run what the command line contains. After -- there is nothing to
  # complete; a flag being typed asks for every flag ("-").
  local w
  for w in "${words[@]}"; do [[ "$w" == "--" ]] && return 0; done
  if [[ "$cur" == -* ]]; then
    opts=$("${words[@]}" - --generate-bash-completion 2>/dev/null)
  else
    opts=$("${words[@]}" --generate-bash-completion 2>/dev/null)
  fi
  COMPREPLY=($(compgen -W "${opts}" -- "${cur}"))
}

complete -o bashdefault -o default -F _dockca_complete dockca
`

const zshCompletion = `#compdef dockca
# zsh completion for dockca: dockca completion zsh > "${fpath[1]}/_dockca"

_dockca_zsh_autocomplete() {
  local -a opts
  local cur
  cur=${words[-1]}
  if [[ "$cur" == "-"* ]]; then
    opts=("${(@f)$(${words[@]:0:#words[@]-1} ${cur} --generate-bash-completion)}")
  else
    opts=("${(@f)$(${words[@]:0:#words[@]-1} --generate-bash-completion)}")
  fi

  if [[ "${opts[1]}" != "" ]]; then
    _describe 'values' opts
  else
    _files
  fi
}

compdef _dockca_zsh_autocomplete dockca
`

func newCompletionCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script for bash, zsh or fish",
		UsageText: "dockca completion bash|zsh|fish",
		Description: "Completes commands, subcommands and flags. For example:\n" +
			"  source <(dockca completion bash)                        # in ~/.bashrc\n" +
			"  dockca completion zsh > \"${fpath[1]}/_dockca\"\n" +
			"  dockca completion fish > ~/.config/fish/completions/dockca.fish",
		BashComplete: func(c *cli.Context) {
			if c.NArg() == 0 {
				fmt.Fprintln(c.App.Writer, "bash\nzsh\nfish")
			}
		},
		Action: func(c *cli.Context) error {
			if err := argsExactly(c, 1, "SHELL (bash, zsh or fish)"); err != nil {
				return err
			}
			var script string
			switch sh := c.Args().First(); sh {
			case "bash":
				script = bashCompletion
			case "zsh":
				script = zshCompletion
			case "fish":
				s, err := c.App.ToFishCompletion()
				if err != nil {
					return fmt.Errorf("completion fish: %w", err)
				}
				script = s
			default:
				return usagef("completion: unknown shell %q (use bash, zsh or fish)", sh)
			}
			_, err := fmt.Fprint(c.App.Writer, script)
			return err
		},
	}
}
