! A served surrogate in place of MadGraph5_aMC@NLO's SMATRIX(P, ANS), for a whole vector of events at once.
!
! MadGraph writes one SUBROUTINE SMATRIX(P, ANS) per subprocess (SubProcesses/P1_gg_gg/matrix.f): P(0:3,
! NEXTERNAL) holds (E, px, py, pz) of one event in the partonic frame, incoming first, and ANS is |M|^2 summed
! and averaged over colours and helicities, with MadGraph's couplings and its identical-particle factor IDEN.
! SMATRIX_VEC below takes P(0:3, NEXTERNAL, NEVENTS), the same layout with the event as the last index, and
! asks the server for all NEVENTS in one call; the client splits large vectors into the server's batches and
! pipelines them. To swap it in:
!
!   1. Build calsurr's clients (cmake --install puts calsurr_client.mod in <prefix>/include and the libraries
!      in <prefix>/lib), then add to the process's SubProcesses/makefile
!          FFLAGS += -I<prefix>/include
!          LINKLIBS += -L<prefix>/lib -Wl,-rpath,<prefix>/lib -lcalsurr_fortran -lcalsurr_client
!   2. Copy the subroutine SMATRIX_VEC (and SMATRIX_VEC_SIGMAS if you want the uncertainties) into the
!      subprocess folder, replace the PARAMETER NEXTERNAL by  INCLUDE 'nexternal.inc'  and set COUPLING_FACTOR
!      from MadGraph's running coupling: the surrogate is |M|^2 at g_s = 1 without the 1/(n-2)! of identical
!      final-state gluons, so ANS = |M|^2 * G**(2*(NEXTERNAL-2)) / IDENT with G from coupl.inc and the
!      final-state symmetry factor IDENT (2 for gg -> gg).
!   3. Where the integrator loops over events calling SMATRIX(P(0,1,I), ANS(I)), fill P(0:3, NEXTERNAL, NEVENTS)
!      and call SMATRIX_VEC(P, NEVENTS, ANS, IERR) once (MadGraph's vectorised mode hands out such blocks).
!      The model and the server come from the environment: CALSURR_MODEL (default gg_gg) and CALSURR_SERVER
!      (default 127.0.0.1:8001), or from a call to SMATRIX_VEC_CONNECT(ADDRESS, MODEL, IERR) first.
!
! The driver at the end (program smatrix_example) reads NEVENTS x NEXTERNAL x 4 float64 momenta from a raw
! binary file, calls SMATRIX_VEC and SMATRIX_VEC_SIGMAS, and writes ANS, mean, sigma_stat, sigma_syst and
! sigma_tot, NEVENTS float64 each, one after the other (float64 [5, nevents]), to the output file; the tests
! compare them with onnxruntime in-process.
!
!   smatrix_example MOMENTA.bin OUT.bin [SERVER [MODEL]]      exit status: 0, or the gRPC code of a failure

!> The connection SMATRIX_VEC uses, opened once: MadGraph's integration runs in one thread per process.
module smatrix_calsurr
  use, intrinsic :: iso_c_binding, only: c_double
  use calsurr_client
  implicit none
  private
  public :: smatrix_client, smatrix_model, smatrix_connected, smatrix_vec_connect_env

  type(calsurr_client_t), save :: smatrix_client
  character(len=:), allocatable, save :: smatrix_model
  logical, save :: smatrix_connected = .false.

contains

  !> Connect from the environment (CALSURR_SERVER, CALSURR_MODEL) unless already connected.
  subroutine smatrix_vec_connect_env(ierr)
    integer, intent(out) :: ierr
    character(len=512) :: value
    integer :: length, status

    ierr = 0
    if (smatrix_connected) return
    call get_environment_variable('CALSURR_MODEL', value, length, status)
    smatrix_model = 'gg_gg'
    if (status == 0 .and. length > 0) smatrix_model = value(1:length)
    call get_environment_variable('CALSURR_SERVER', value, length, status)
    if (status == 0 .and. length > 0) then
      call calsurr_connect(value(1:length), smatrix_client, ierr)
    else
      call calsurr_connect('127.0.0.1:8001', smatrix_client, ierr)
    end if
    smatrix_connected = ierr == 0
  end subroutine smatrix_vec_connect_env

end module smatrix_calsurr

!> Connect SMATRIX_VEC to a server and model explicitly (instead of the environment).
subroutine smatrix_vec_connect(address, model, ierr)
  use calsurr_client
  use smatrix_calsurr
  implicit none
  character(len=*), intent(in) :: address, model
  integer, intent(out) :: ierr

  if (smatrix_connected) call calsurr_close(smatrix_client)
  smatrix_model = trim(model)
  call calsurr_connect(address, smatrix_client, ierr)
  smatrix_connected = ierr == 0
end subroutine smatrix_vec_connect

!> ANS(I) = |M|^2 of event I, for the NEVENTS events of P(0:3, NEXTERNAL, NEVENTS), in one call to the server.
!> IERR = 0, or the gRPC status code of a failure (ANS is then undefined; the message is printed once).
subroutine smatrix_vec(p, nevents, ans, ierr)
  use, intrinsic :: iso_c_binding, only: c_double
  use calsurr_client
  use smatrix_calsurr
  implicit none
  integer, parameter :: NEXTERNAL = 4 ! in MadGraph: INCLUDE 'nexternal.inc'
  real(c_double), parameter :: COUPLING_FACTOR = 1.0_c_double ! in MadGraph: G**(2*(NEXTERNAL-2)) / IDENT
  integer, intent(in) :: nevents
  real(c_double), intent(in) :: p(0:3, NEXTERNAL, nevents)
  real(c_double), intent(out) :: ans(nevents)
  integer, intent(out) :: ierr

  call smatrix_vec_connect_env(ierr)
  if (ierr == 0) call calsurr_predict(smatrix_client, smatrix_model, p, NEXTERNAL, nevents, ans, ierr=ierr)
  if (ierr /= 0) then
    write (0, '(a, i0, 2a)') 'SMATRIX_VEC: calsurr error ', ierr, ': ', calsurr_error_message()
    return
  end if
  if (COUPLING_FACTOR /= 1.0_c_double) ans = ans*COUPLING_FACTOR
end subroutine smatrix_vec

!> SMATRIX_VEC with the surrogate's uncertainties of each |M|^2 (statistical, systematic, total), same units.
subroutine smatrix_vec_sigmas(p, nevents, ans, sigma_stat, sigma_syst, sigma_tot, ierr)
  use, intrinsic :: iso_c_binding, only: c_double
  use calsurr_client
  use smatrix_calsurr
  implicit none
  integer, parameter :: NEXTERNAL = 4 ! in MadGraph: INCLUDE 'nexternal.inc'
  real(c_double), parameter :: COUPLING_FACTOR = 1.0_c_double ! in MadGraph: G**(2*(NEXTERNAL-2)) / IDENT
  integer, intent(in) :: nevents
  real(c_double), intent(in) :: p(0:3, NEXTERNAL, nevents)
  real(c_double), intent(out) :: ans(nevents), sigma_stat(nevents), sigma_syst(nevents), sigma_tot(nevents)
  integer, intent(out) :: ierr

  call smatrix_vec_connect_env(ierr)
  if (ierr == 0) call calsurr_predict(smatrix_client, smatrix_model, p, NEXTERNAL, nevents, ans, &
                                      sigma_stat, sigma_syst, sigma_tot, ierr)
  if (ierr /= 0) then
    write (0, '(a, i0, 2a)') 'SMATRIX_VEC_SIGMAS: calsurr error ', ierr, ': ', calsurr_error_message()
    return
  end if
  if (COUPLING_FACTOR /= 1.0_c_double) then
    ans = ans*COUPLING_FACTOR
    sigma_stat = sigma_stat*COUPLING_FACTOR
    sigma_syst = sigma_syst*COUPLING_FACTOR
    sigma_tot = sigma_tot*COUPLING_FACTOR
  end if
end subroutine smatrix_vec_sigmas

program smatrix_example
  use, intrinsic :: iso_c_binding, only: c_double
  implicit none
  integer, parameter :: NEXTERNAL = 4
  real(c_double), allocatable :: p(:, :, :), ans(:), mean(:), sigma_stat(:), sigma_syst(:), sigma_tot(:)
  character(len=4096) :: input, output, server, model
  integer :: nevents, ierr, unit, status
  integer(8) :: bytes
  interface
    subroutine smatrix_vec(p, nevents, ans, ierr)
      import :: c_double, NEXTERNAL
      integer, intent(in) :: nevents
      real(c_double), intent(in) :: p(0:3, NEXTERNAL, nevents)
      real(c_double), intent(out) :: ans(nevents)
      integer, intent(out) :: ierr
    end subroutine smatrix_vec
    subroutine smatrix_vec_sigmas(p, nevents, ans, sigma_stat, sigma_syst, sigma_tot, ierr)
      import :: c_double, NEXTERNAL
      integer, intent(in) :: nevents
      real(c_double), intent(in) :: p(0:3, NEXTERNAL, nevents)
      real(c_double), intent(out) :: ans(nevents), sigma_stat(nevents), sigma_syst(nevents), sigma_tot(nevents)
      integer, intent(out) :: ierr
    end subroutine smatrix_vec_sigmas
    subroutine smatrix_vec_connect(address, model, ierr)
      character(len=*), intent(in) :: address, model
      integer, intent(out) :: ierr
    end subroutine smatrix_vec_connect
  end interface

  if (command_argument_count() < 2) then
    write (0, '(a)') 'usage: smatrix_example MOMENTA.bin OUT.bin [SERVER [MODEL]]'
    stop 2
  end if
  call get_command_argument(1, input)
  call get_command_argument(2, output)
  if (command_argument_count() >= 3) then
    call get_command_argument(3, server)
    model = 'gg_gg'
    if (command_argument_count() >= 4) call get_command_argument(4, model)
    call smatrix_vec_connect(trim(server), trim(model), ierr)
    if (ierr /= 0) call fail(ierr)
  end if

  inquire (file=trim(input), size=bytes)
  if (bytes < 0 .or. mod(bytes, int(8*4*NEXTERNAL, 8)) /= 0) then
    write (0, '(3a, i0)') 'smatrix_example: ', trim(input), ' is not float64 [nevents, 4, 4]; bytes: ', bytes
    stop 2
  end if
  nevents = int(bytes/(8*4*NEXTERNAL))
  allocate (p(0:3, NEXTERNAL, nevents))
  open (newunit=unit, file=trim(input), access='stream', form='unformatted', status='old', action='read')
  read (unit) p
  close (unit)

  allocate (ans(nevents), mean(nevents), sigma_stat(nevents), sigma_syst(nevents), sigma_tot(nevents))
  call smatrix_vec(p, nevents, ans, ierr)
  if (ierr /= 0) call fail(ierr)
  call smatrix_vec_sigmas(p, nevents, mean, sigma_stat, sigma_syst, sigma_tot, ierr)
  if (ierr /= 0) call fail(ierr)

  open (newunit=unit, file=trim(output), access='stream', form='unformatted', status='replace', action='write', &
        iostat=status)
  if (status /= 0) then
    write (0, '(2a)') 'smatrix_example: cannot write ', trim(output)
    stop 2
  end if
  write (unit) ans, mean, sigma_stat, sigma_syst, sigma_tot ! float64 [5, nevents], row-major
  close (unit)
  write (*, '(a, i0, a)') 'smatrix_example: ', nevents, ' events'

contains

  subroutine fail(code)
    integer, intent(in) :: code
    write (0, '(a, i0)') 'smatrix_example: failed with status ', code
    stop code
  end subroutine fail

end program smatrix_example
