!> calsurr_client: a served |M|^2 surrogate from Fortran, over the C API of clients/include/calsurr/calsurr.h.
!>
!> Fortran 2008 with ISO_C_BINDING; no state of its own, so it is as thread safe as the C API (share one client
!> per process, call from any thread; the message is per thread).
!>
!>   use calsurr_client
!>   type(calsurr_client_t) :: client
!>   real(8) :: p(0:3, 4, 1000), mean(1000), stat(1000), syst(1000), tot(1000)
!>   integer :: ierr
!>   call calsurr_connect('127.0.0.1:8001', client, ierr)
!>   call calsurr_predict(client, 'gg_gg', p, 4, 1000, mean, stat, syst, tot, ierr)
!>   if (ierr /= 0) print *, ierr, calsurr_error_message()
!>   call calsurr_close(client)
!>
!> Momenta are (E, px, py, pz) in GeV, particles in the model's process order, incoming first. MadGraph's
!> p(0:3, nexternal, nevents) is column-major with E fastest, then the particle, then the event: byte for byte
!> the server's row-major [nevents, nexternal, 4], so the array goes to the C API as it is, with no copy. The
!> dummy is explicit-shape, so a contiguous actual argument (a whole array, or p(:, :, i:j)) is passed by
!> address; only a non-contiguous section would make the compiler copy it in (correct, but slower). The
!> output arrays are written in place too.
!>
!> ierr is the gRPC status code (0 OK, 3 INVALID_ARGUMENT, 4 DEADLINE_EXCEEDED, 5 NOT_FOUND, 14 UNAVAILABLE, ...;
!> the CALSURR_* parameters below); after a failure calsurr_error_message() says what went wrong.
module calsurr_client
  use, intrinsic :: iso_c_binding, only: c_char, c_double, c_int, c_int64_t, c_size_t, c_ptr, c_null_ptr, &
                                         c_null_char, c_loc, c_associated, c_f_pointer
  implicit none
  private

  public :: calsurr_client_t
  public :: calsurr_connect, calsurr_predict, calsurr_card, calsurr_model_particles
  public :: calsurr_error_message, calsurr_close

  !> gRPC status codes, as in calsurr.h.
  integer, parameter, public :: CALSURR_OK = 0, CALSURR_CANCELLED = 1, CALSURR_UNKNOWN = 2, &
                                CALSURR_INVALID_ARGUMENT = 3, CALSURR_DEADLINE_EXCEEDED = 4, &
                                CALSURR_NOT_FOUND = 5, CALSURR_RESOURCE_EXHAUSTED = 8, &
                                CALSURR_FAILED_PRECONDITION = 9, CALSURR_UNIMPLEMENTED = 12, &
                                CALSURR_INTERNAL = 13, CALSURR_UNAVAILABLE = 14, CALSURR_UNAUTHENTICATED = 16

  !> A connection to one server; opaque. Default-initialised to "not connected"; calsurr_close on it is a no-op.
  type :: calsurr_client_t
    type(c_ptr) :: handle = c_null_ptr
  end type calsurr_client_t

  !> struct calsurr_options, field for field (bind(c) gives it the C layout).
  type, bind(c) :: c_options
    real(c_double) :: timeout_seconds
    integer(c_int) :: max_attempts
    real(c_double) :: initial_backoff_seconds
    real(c_double) :: max_backoff_seconds
    integer(c_int64_t) :: chunk_rows
    integer(c_int) :: max_in_flight
    real(c_double) :: coalesce_window_us
    integer(c_int64_t) :: coalesce_max_rows
    type(c_ptr) :: root_certificates_pem
    type(c_ptr) :: client_certificate_pem
    type(c_ptr) :: client_key_pem
    type(c_ptr) :: bearer_token
  end type c_options

  integer(c_size_t), parameter :: FIRST_CARD_BYTES = 8192 !< a card is a few kB; a larger one costs a second call

  interface
    subroutine c_options_init(options) bind(c, name='calsurr_options_init')
      import :: c_options
      type(c_options), intent(out) :: options
    end subroutine c_options_init

    integer(c_int) function c_connect(address, options, client) bind(c, name='calsurr_connect')
      import :: c_char, c_int, c_ptr, c_options
      character(kind=c_char), intent(in) :: address(*)
      type(c_options), intent(in) :: options
      type(c_ptr), intent(out) :: client
    end function c_connect

    integer(c_int) function c_predict(client, model, momenta, n_events, n_particles, mean, sigma_stat, sigma_syst, &
                                      sigma_tot) bind(c, name='calsurr_predict')
      import :: c_char, c_double, c_int, c_int64_t, c_ptr
      type(c_ptr), value :: client
      character(kind=c_char), intent(in) :: model(*)
      real(c_double), intent(in) :: momenta(*)
      integer(c_int64_t), value :: n_events
      integer(c_int), value :: n_particles
      type(c_ptr), value :: mean, sigma_stat, sigma_syst, sigma_tot
    end function c_predict

    integer(c_int) function c_card_json(client, model, buffer, size, needed) bind(c, name='calsurr_card_json')
      import :: c_char, c_int, c_size_t, c_ptr
      type(c_ptr), value :: client
      character(kind=c_char), intent(in) :: model(*)
      character(kind=c_char), intent(out) :: buffer(*)
      integer(c_size_t), value :: size
      integer(c_size_t), intent(out) :: needed
    end function c_card_json

    integer(c_int) function c_model_particles(client, model, n_particles) bind(c, name='calsurr_model_particles')
      import :: c_char, c_int, c_ptr
      type(c_ptr), value :: client
      character(kind=c_char), intent(in) :: model(*)
      integer(c_int), intent(out) :: n_particles
    end function c_model_particles

    type(c_ptr) function c_last_error() bind(c, name='calsurr_last_error')
      import :: c_ptr
    end function c_last_error

    subroutine c_close(client) bind(c, name='calsurr_close')
      import :: c_ptr
      type(c_ptr), value :: client
    end subroutine c_close

    integer(c_size_t) function c_strlen(s) bind(c, name='strlen')
      import :: c_ptr, c_size_t
      type(c_ptr), value :: s
    end function c_strlen
  end interface

contains

  !> Connect to a server at address ('host:port'); the channel dials lazily, on the first call. The optional
  !> arguments override the C API's documented defaults (calsurr_options_init): the deadline of one predict
  !> call in seconds (0: none), attempts on UNAVAILABLE and the backoff between them in seconds, rows per
  !> request and requests in flight for large arrays, the coalescing window in microseconds (0: off), the PEM
  !> of a CA to trust (TLS; with client_certificate_pem and client_key_pem: mutual TLS) and a bearer token.
  subroutine calsurr_connect(address, client, ierr, timeout_seconds, max_attempts, initial_backoff_seconds, &
                             max_backoff_seconds, chunk_rows, max_in_flight, coalesce_window_us, &
                             root_certificates_pem, client_certificate_pem, client_key_pem, bearer_token)
    character(len=*), intent(in) :: address
    type(calsurr_client_t), intent(inout) :: client
    integer, intent(out) :: ierr
    real(c_double), intent(in), optional :: timeout_seconds, initial_backoff_seconds, max_backoff_seconds
    real(c_double), intent(in), optional :: coalesce_window_us
    integer, intent(in), optional :: max_attempts, max_in_flight
    integer(c_int64_t), intent(in), optional :: chunk_rows
    character(len=*), intent(in), optional :: root_certificates_pem, client_certificate_pem, client_key_pem
    character(len=*), intent(in), optional :: bearer_token
    type(c_options) :: options
    ! NUL-terminated copies that outlive the call to c_connect (which copies them in turn)
    character(kind=c_char, len=:), allocatable, target :: ca, certificate, key, token

    call c_options_init(options)
    if (present(timeout_seconds)) options%timeout_seconds = timeout_seconds
    if (present(max_attempts)) options%max_attempts = int(max_attempts, c_int)
    if (present(initial_backoff_seconds)) options%initial_backoff_seconds = initial_backoff_seconds
    if (present(max_backoff_seconds)) options%max_backoff_seconds = max_backoff_seconds
    if (present(chunk_rows)) options%chunk_rows = chunk_rows
    if (present(max_in_flight)) options%max_in_flight = int(max_in_flight, c_int)
    if (present(coalesce_window_us)) options%coalesce_window_us = coalesce_window_us
    if (present(root_certificates_pem)) then
      ca = root_certificates_pem//c_null_char
      options%root_certificates_pem = c_loc(ca)
    end if
    if (present(client_certificate_pem)) then
      certificate = client_certificate_pem//c_null_char
      options%client_certificate_pem = c_loc(certificate)
    end if
    if (present(client_key_pem)) then
      key = client_key_pem//c_null_char
      options%client_key_pem = c_loc(key)
    end if
    if (present(bearer_token)) then
      token = trim(bearer_token)//c_null_char
      options%bearer_token = c_loc(token)
    end if
    ierr = int(c_connect(c_string(address), options, client%handle))
  end subroutine calsurr_connect

  !> |M|^2 of nevents phase-space points: mean and its uncertainties (statistical, systematic, total), each
  !> nevents values in the model's unit (GeV^(8-2*nexternal)), written in place. p(0:3, nexternal, nevents) is
  !> MadGraph's layout and goes to the server without a copy (see the module's header). sigma_stat, sigma_syst
  !> and sigma_tot may be left out. nevents = 0 returns ierr = 0 at once. Errors (ierr /= 0) leave the outputs
  !> undefined: a wrong model is 5, a nexternal the model does not take is 3, a server that stays down is 14.
  subroutine calsurr_predict(client, model, p, nexternal, nevents, mean, sigma_stat, sigma_syst, sigma_tot, ierr)
    type(calsurr_client_t), intent(in) :: client
    character(len=*), intent(in) :: model
    integer, intent(in) :: nexternal, nevents
    real(c_double), intent(in) :: p(0:3, nexternal, nevents)
    real(c_double), intent(out), target :: mean(nevents)
    real(c_double), intent(out), target, optional :: sigma_stat(nevents), sigma_syst(nevents), sigma_tot(nevents)
    integer, intent(out) :: ierr

    if (nevents == 0 .and. nexternal > 0) then
      ierr = CALSURR_OK
      return
    end if
    ierr = int(c_predict(client%handle, c_string(model), p, int(nevents, c_int64_t), int(nexternal, c_int), &
                         address_of(mean), address_of(sigma_stat), address_of(sigma_syst), address_of(sigma_tot)))
  end subroutine calsurr_predict

  !> The model's card as JSON text (units, domain, calibration, the process, e.g. "process": "gg_gg").
  subroutine calsurr_card(client, model, json, ierr)
    type(calsurr_client_t), intent(in) :: client
    character(len=*), intent(in) :: model
    character(len=:), allocatable, intent(out) :: json
    integer, intent(out) :: ierr
    character(kind=c_char), allocatable :: buffer(:)
    integer(c_size_t) :: needed
    integer :: i

    allocate (buffer(FIRST_CARD_BYTES))
    ierr = int(c_card_json(client%handle, c_string(model), buffer, size(buffer, kind=c_size_t), needed))
    if (ierr == CALSURR_RESOURCE_EXHAUSTED .and. needed >= size(buffer, kind=c_size_t)) then
      deallocate (buffer)
      allocate (buffer(needed + 1))
      ierr = int(c_card_json(client%handle, c_string(model), buffer, size(buffer, kind=c_size_t), needed))
    end if
    if (ierr /= CALSURR_OK) then
      json = ''
      return
    end if
    allocate (character(len=needed) :: json)
    do i = 1, int(needed)
      json(i:i) = buffer(i)
    end do
  end subroutine calsurr_card

  !> Particles per event the model takes (its input [-1, n, 4]): compare with NEXTERNAL before the first call.
  subroutine calsurr_model_particles(client, model, nexternal, ierr)
    type(calsurr_client_t), intent(in) :: client
    character(len=*), intent(in) :: model
    integer, intent(out) :: nexternal
    integer, intent(out) :: ierr
    integer(c_int) :: n

    n = 0
    ierr = int(c_model_particles(client%handle, c_string(model), n))
    nexternal = int(n)
  end subroutine calsurr_model_particles

  !> The message of the last call that failed on this thread ('' after a success).
  function calsurr_error_message() result(message)
    character(len=:), allocatable :: message
    type(c_ptr) :: text
    character(kind=c_char), pointer :: chars(:)
    integer :: i, n

    text = c_last_error()
    if (.not. c_associated(text)) then
      message = ''
      return
    end if
    n = int(c_strlen(text))
    call c_f_pointer(text, chars, [n])
    allocate (character(len=n) :: message)
    do i = 1, n
      message(i:i) = chars(i)
    end do
  end function calsurr_error_message

  !> Close the connection and free it; the client is "not connected" afterwards (closing it again is a no-op).
  !> Calls in flight on other threads must have returned.
  subroutine calsurr_close(client)
    type(calsurr_client_t), intent(inout) :: client

    if (c_associated(client%handle)) call c_close(client%handle)
    client%handle = c_null_ptr
  end subroutine calsurr_close

  !> A Fortran string as a NUL-terminated C string, trailing blanks dropped (fixed-length variables pad).
  pure function c_string(text) result(c_text)
    character(len=*), intent(in) :: text
    character(kind=c_char, len=len_trim(text) + 1) :: c_text

    c_text = trim(text)//c_null_char
  end function c_string

  !> The address of an output array, NULL when it is absent or empty (c_loc needs a nonzero size).
  function address_of(values) result(address)
    real(c_double), intent(in), target, contiguous, optional :: values(:)
    type(c_ptr) :: address

    address = c_null_ptr
    if (present(values)) then
      if (size(values) > 0) address = c_loc(values)
    end if
  end function address_of

end module calsurr_client
