# SPDX-License-Identifier: MIT
# Run by `cmake --install` (install(SCRIPT) in CMakeLists.txt): installs
# etc/etrnd.conf as SYSCONFDIR/etrnd/etrnd.conf with the paths of an
# installed node (spool under LOCALSTATEDIR, the control socket under
# RUNSTATEDIR, the system's Redis), never over an operator's own file (a
# second install writes etrnd.conf.default beside it), and the systemd unit
# with its ExecStart and -c paths pointing at where this install put them.
# The directories are resolved here, at install time, so that
# `cmake --install --prefix P` and DESTDIR relocate them as install() does.
# In: ETRND_SOURCE_DIR, ETRND_SYSCONFDIR, ETRND_SBINDIR, ETRND_BINDIR,
# ETRND_LOCALSTATEDIR, ETRND_RUNSTATEDIR, ETRND_UNITDIR (as configured,
# relative to the prefix or absolute).

# GNUInstallDirs' rule for the "full" directories, at install time: etc,
# var and run go to /etc, /var and /run when the prefix is /usr.
function(etrnd_full out dir sysdir)
  if(IS_ABSOLUTE "${dir}")
    set(full "${dir}")
  elseif(CMAKE_INSTALL_PREFIX STREQUAL "/usr" AND sysdir)
    set(full "/${dir}")
  else()
    set(full "${CMAKE_INSTALL_PREFIX}/${dir}")
  endif()
  set(${out} "${full}" PARENT_SCOPE)
endfunction()

etrnd_full(confdir "${ETRND_SYSCONFDIR}" TRUE)
etrnd_full(sbindir "${ETRND_SBINDIR}" FALSE)
etrnd_full(bindir "${ETRND_BINDIR}" FALSE)
etrnd_full(statedir "${ETRND_LOCALSTATEDIR}" TRUE)
etrnd_full(rundir "${ETRND_RUNSTATEDIR}" TRUE)
# systemd's RuntimeDirectory=etrnd is /run/etrnd (Debian's /var/run is a
# link to it).
if(rundir STREQUAL "/var/run")
  set(rundir "/run")
endif()
etrnd_full(unitdir "${ETRND_UNITDIR}" FALSE)
set(confdir "${confdir}/etrnd")

# The example configuration, made an installed node's.
file(READ "${ETRND_SOURCE_DIR}/etc/etrnd.conf" conf)
foreach(pair
    "spool_dir = var/spool|spool_dir = ${statedir}/spool/etrnd"
    "control_socket = var/etrnd.ctl|control_socket = ${rundir}/etrnd/etrnd.ctl"
    "redis = unix:var/redis.sock|redis = 127.0.0.1:6379")
  string(REPLACE "|" ";" kv "${pair}")
  list(GET kv 0 from)
  list(GET kv 1 to)
  string(FIND "${conf}" "\n${from}\n" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "etc/etrnd.conf has no line \"${from}\" any more: update etc/install.cmake")
  endif()
  string(REPLACE "\n${from}\n" "\n${to}\n" conf "${conf}")
endforeach()
set(conf "# Installed by cmake --install from etrnd's etc/etrnd.conf: the paths\n# are this installation's; man etrnd.conf describes every key.\n${conf}")
set(dest "$ENV{DESTDIR}${confdir}/etrnd.conf")
file(MAKE_DIRECTORY "$ENV{DESTDIR}${confdir}")
if(EXISTS "${dest}")
  file(READ "${dest}" old)
  if(NOT old STREQUAL conf)
    set(dest "${dest}.default")
    message(STATUS "Keeping: $ENV{DESTDIR}${confdir}/etrnd.conf (the new one is etrnd.conf.default)")
  endif()
endif()
message(STATUS "Installing: ${dest}")
file(WRITE "${dest}" "${conf}")
file(CHMOD "${dest}" PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)

# The systemd unit (etc/systemd/etrnd.service) names /usr/sbin/etrnd,
# /usr/bin/etrnctl, /etc/etrnd/ and /var/spool/etrnd: the paths of a /usr
# install, replaced by this install's.
set(unit "${ETRND_SOURCE_DIR}/etc/systemd/etrnd.service")
if(EXISTS "${unit}")
  file(READ "${unit}" text)
  string(REPLACE "/usr/sbin/etrnd" "${sbindir}/etrnd" text "${text}")
  string(REPLACE "/usr/bin/etrnctl" "${bindir}/etrnctl" text "${text}")
  string(REPLACE "/etc/etrnd/" "${confdir}/" text "${text}")
  string(REPLACE "/var/spool/etrnd" "${statedir}/spool/etrnd" text "${text}")
  file(MAKE_DIRECTORY "$ENV{DESTDIR}${unitdir}")
  message(STATUS "Installing: $ENV{DESTDIR}${unitdir}/etrnd.service")
  file(WRITE "$ENV{DESTDIR}${unitdir}/etrnd.service" "${text}")
  file(CHMOD "$ENV{DESTDIR}${unitdir}/etrnd.service" PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
else()
  message(STATUS "Not installing the systemd unit: etc/systemd/etrnd.service is not in this tree")
endif()
