#compdef git-exp
# zsh completion for `git exp` (gitexp). zsh's git completion calls _git-exp for `git exp ...`;
# put this file in a directory of $fpath as _git-exp, or add to ~/.zshrc:
#   source <(git exp completion zsh)

_git-exp() {
  # words[1] is "exp" (under git) or "git-exp"; the words after it go to git exp _complete
  local -a out
  out=(${(f)"$(git exp _complete $((CURRENT - 2)) -- ${words[2,-1]} 2>/dev/null)"})
  if [[ "${out[1]}" == __files__ ]]; then
    _files
  else
    compadd -Q -- $out
  fi
}

if [[ -n ${ZSH_VERSION-} ]]; then
  compdef _git-exp git-exp 2>/dev/null
  zstyle ':completion:*:*:git:*' user-commands exp:'run and track experiments (gitexp)' 2>/dev/null
fi
