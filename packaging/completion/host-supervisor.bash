# bash completion for host-supervisor(8)                     -*- shell-script -*-
# Installed as .../bash-completion/completions/host-supervisor. Works without the
# bash-completion package too (plain compgen), so it can be sourced directly.
# The flag lists are checked against supervisor.cli.build_parser() by
# tests/unit/test_manpage.py.

_host_supervisor_units()
{
    # Supervised units from the daemon when it answers, else systemd's loaded units.
    # (status exits 1 or 2 when a unit is unwell: its output counts all the same.)
    local socket=$1 out
    out=$(timeout 2 host-supervisor status --json ${socket:+--socket "$socket"} 2>/dev/null)
    out=$(printf '%s\n' "$out" | sed -n 's/^ *"unit": *"\([^"]*\)".*/\1/p') &&
        [[ -n $out ]] && { printf '%s\n' "$out"; return; }
    systemctl list-units --all --plain --no-legend --full 2>/dev/null | awk '{print $1}'
}

_host_supervisor()
{
    local cur prev cmd="" socket="" i
    COMPREPLY=()
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=${COMP_WORDS[COMP_CWORD - 1]}

    local commands="run validate discover schema config check test-alert status history why pause resume
        failover failback reset metrics reload"

    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${COMP_WORDS[i]} in
            --socket) socket=${COMP_WORDS[i + 1]} ;;
            -*) ;;
            *) [[ -z $cmd && ${COMP_WORDS[i - 1]} != --* ]] && cmd=${COMP_WORDS[i]} ;;
        esac
    done

    case $prev in
        --config | --state-dir)
            compopt -o filenames 2>/dev/null
            mapfile -t COMPREPLY < <(compgen -d -- "$cur")
            return 0
            ;;
        --socket)
            compopt -o filenames 2>/dev/null
            mapfile -t COMPREPLY < <(compgen -f -- "$cur")
            return 0
            ;;
        --since | --limit | --last | --to | --to-host | --for | --reason | --interval)
            return 0
            ;;
    esac

    if [[ -z $cmd ]]; then
        if [[ $cur == -* ]]; then
            mapfile -t COMPREPLY < <(compgen -W "--help --version" -- "$cur")
        else
            mapfile -t COMPREPLY < <(compgen -W "$commands" -- "$cur")
        fi
        return 0
    fi

    local flags="--help"
    case $cmd in
        run) flags+=" --config --socket --state-dir --dry-run" ;;
        validate) flags+=" --config --main" ;;
        discover) flags+=" --config --dry-run --unit" ;;
        schema) flags+=" --main" ;;
        config) [[ " ${COMP_WORDS[*]} " == *" show "* ]] && flags+=" --config" ;;
        check) flags+=" --config --json --warning --critical" ;;
        test-alert) flags+=" --config" ;;
        status) flags+=" --socket --json --full --no-color" ;;
        history) flags+=" --socket --since --limit --follow --interval --json --no-color" ;;
        why) flags+=" --socket --last --json" ;;
        pause) flags+=" --socket --json --for --reason" ;;
        failback | reset | reload) flags+=" --socket --json" ;;
        resume) flags+=" --socket --json --all" ;;
        failover) flags+=" --socket --json --to --to-host" ;;
        metrics) flags+=" --socket --reset --json" ;;
        *) return 0 ;;
    esac

    if [[ $cur == -* ]]; then
        mapfile -t COMPREPLY < <(compgen -W "$flags" -- "$cur")
        return 0
    fi

    case $cmd in
        config)
            [[ $prev == config ]] && mapfile -t COMPREPLY < <(compgen -W "show" -- "$cur")
            ;;
        validate)
            compopt -o filenames 2>/dev/null
            mapfile -t COMPREPLY < <(compgen -f -- "$cur")
            ;;
        status | history | why | pause | resume | reset | failover | failback)
            mapfile -t COMPREPLY < <(compgen -W "$(_host_supervisor_units "$socket")" -- "$cur")
            ;;
        check)
            compopt -o filenames 2>/dev/null
            mapfile -t COMPREPLY < <(
                compgen -W "$(_host_supervisor_units "$socket")" -- "$cur"
                compgen -f -- "$cur"
            )
            ;;
    esac
    return 0
}

complete -F _host_supervisor host-supervisor
