# bash completion for `git exp` (gitexp).
# Installed as <prefix>/share/bash-completion/completions/git-exp, git's own completion loads it
# when you complete `git exp ...`; or add to ~/.bashrc:  source <(git exp completion bash)
# The words after "exp" go to `git exp _complete INDEX -- WORDS...`, which answers one
# candidate per line (__files__: complete file names).

_git_exp ()
{
	# Called by git's completion with words, cword and cur set; also by _git_exp_standalone.
	local i start=-1
	for ((i = 1; i < ${#words[@]}; i++)); do
		if [ "${words[i]}" = exp ]; then
			start=$((i + 1))
			break
		fi
	done
	[ "$start" -ge 0 ] || return 0
	local IFS=$'\n' out
	out=$(git exp _complete "$((cword - start))" -- "${words[@]:start}" 2>/dev/null) || return 0
	if [ "$out" = __files__ ]; then
		COMPREPLY=($(compgen -f -- "$cur"))
		compopt -o filenames 2>/dev/null
		return 0
	fi
	COMPREPLY=($(compgen -W "$out" -- "$cur"))
	case "${COMPREPLY[*]}" in *=) compopt -o nospace 2>/dev/null ;; esac
	return 0
}

_git_exp_standalone ()
{
	local cur=${COMP_WORDS[COMP_CWORD]} cword=$((COMP_CWORD + 1))
	local words=(git exp "${COMP_WORDS[@]:1}")
	_git_exp
}

complete -o bashdefault -o default -F _git_exp_standalone git-exp
