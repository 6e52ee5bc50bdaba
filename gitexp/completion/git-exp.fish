# fish completion for `git exp` (gitexp): save as ~/.config/fish/completions/git-exp.fish, or run
#   git exp completion fish | source

function __git_exp_complete
    set -l tokens (commandline -opc)
    set -l cur (commandline -ct)
    if test "$tokens[1]" = git
        set -e tokens[1]
    end
    set -e tokens[1]  # "exp" under git, or "git-exp"
    set -l out (git exp _complete (count $tokens) -- $tokens $cur 2>/dev/null)
    if test "$out" = __files__
        __fish_complete_path $cur
    else
        printf '%s\n' $out
    end
end

complete -c git -n '__fish_use_subcommand' -f -a exp -d 'run and track experiments (gitexp)'
complete -c git -n '__fish_seen_subcommand_from exp' -f -a '(__git_exp_complete)'
complete -c git-exp -f -a '(__git_exp_complete)'
