! Unit test of the Fortran module over mock_calsurr.c (no server, no C++ library): the momenta reach the C API
! at the caller's address (no copy), absent outputs arrive as NULL, options and strings cross intact, a card
! larger than the first buffer is fetched whole, and messages come back as Fortran strings.
program test_module
  use, intrinsic :: iso_c_binding, only: c_double, c_ptr, c_loc, c_associated, c_int, c_char, c_f_pointer, c_size_t
  use calsurr_client
  implicit none
  interface
    subroutine mock_expect_momenta(address) bind(c)
      import :: c_ptr
      type(c_ptr), value :: address
    end subroutine mock_expect_momenta
    integer(c_int) function mock_momenta_at_expected() bind(c)
      import :: c_int
    end function mock_momenta_at_expected
    integer(c_int) function mock_recorded_null_outputs() bind(c)
      import :: c_int
    end function mock_recorded_null_outputs
    real(c_double) function mock_recorded_timeout() bind(c)
      import :: c_double
    end function mock_recorded_timeout
    integer(c_int) function mock_recorded_max_attempts() bind(c)
      import :: c_int
    end function mock_recorded_max_attempts
    real(c_double) function mock_recorded_coalesce_window() bind(c)
      import :: c_double
    end function mock_recorded_coalesce_window
    type(c_ptr) function mock_recorded_token() bind(c)
      import :: c_ptr
    end function mock_recorded_token
    integer(c_int) function mock_closed_count() bind(c)
      import :: c_int
    end function mock_closed_count
    integer(c_int) function mock_card_calls() bind(c)
      import :: c_int
    end function mock_card_calls
  end interface

  integer, parameter :: NEXTERNAL = 4, NEVENTS = 7
  type(calsurr_client_t) :: client, unconnected
  real(c_double), target :: p(0:3, NEXTERNAL, NEVENTS)
  real(c_double) :: mean(NEVENTS), stat(NEVENTS), syst(NEVENTS), tot(NEVENTS)
  character(len=:), allocatable :: json
  character(len=16) :: padded_model
  integer :: ierr, i, failures, n

  failures = 0
  p = reshape([(real(i, c_double), i = 1, 4*NEXTERNAL*NEVENTS)], shape(p))

  call calsurr_connect('unreachable:1', client, ierr)
  call check(ierr == CALSURR_UNAVAILABLE, 'connect failure gives its status')
  call check(calsurr_error_message() == 'mock: unreachable:1 is down', 'the message comes back whole')
  call check(.not. c_associated(client%handle), 'a failed connect leaves no handle')

  call calsurr_connect('127.0.0.1:8001', client, ierr, timeout_seconds=2.5d0, max_attempts=3, &
                       coalesce_window_us=0d0, bearer_token='secret  ')
  call check(ierr == CALSURR_OK .and. c_associated(client%handle), 'connect')
  call check(calsurr_error_message() == '', 'no message after a success')
  call check(mock_recorded_timeout() == 2.5d0 .and. mock_recorded_max_attempts() == 3, 'options cross')
  call check(mock_recorded_coalesce_window() == 0d0, 'a zero option crosses')
  call check(c_string_value(mock_recorded_token()) == 'secret', 'token crosses, trailing blanks dropped')

  call mock_expect_momenta(c_loc(p))
  call calsurr_predict(client, 'gg_gg', p, NEXTERNAL, NEVENTS, mean, stat, syst, tot, ierr)
  call check(ierr == CALSURR_OK, 'predict')
  call check(mock_momenta_at_expected() == 1, 'whole array: no copy')
  call check(mock_recorded_null_outputs() == 0, 'all outputs given')
  do i = 1, NEVENTS
    call check(mean(i) == sum(p(:, :, i)), 'event i is p(:, :, i)')
    call check(stat(i) == i - 1 .and. syst(i) == 2*(i - 1) .and. tot(i) == p(3, NEXTERNAL, i), 'sigmas in place')
  end do

  padded_model = 'gg_gg'
  call mock_expect_momenta(c_loc(p(0, 1, 3)))
  call calsurr_predict(client, padded_model, p(:, :, 3:5), NEXTERNAL, 3, mean, ierr=ierr)
  call check(ierr == CALSURR_OK, 'a blank-padded model name is trimmed')
  call check(mock_momenta_at_expected() == 1, 'contiguous section: no copy')
  call check(mock_recorded_null_outputs() == 14, 'absent sigmas are NULL')
  call check(mean(1) == sum(p(:, :, 3)) .and. mean(3) == sum(p(:, :, 5)), 'section values')

  call calsurr_predict(client, 'gg_gg', p, NEXTERNAL, 0, mean, ierr=ierr)
  call check(ierr == CALSURR_OK, 'zero events are fine')

  call calsurr_predict(client, 'gg_ggg', p, NEXTERNAL, NEVENTS, mean, ierr=ierr)
  call check(ierr == CALSURR_NOT_FOUND .and. calsurr_error_message() == 'mock: unknown model', 'wrong model')
  call calsurr_predict(client, 'gg_gg', p, 5, 2, mean, ierr=ierr)
  call check(ierr == CALSURR_INVALID_ARGUMENT, 'wrong nexternal')

  call calsurr_model_particles(client, 'gg_gg', n, ierr)
  call check(ierr == CALSURR_OK .and. n == 4, 'model particles')

  call calsurr_card(client, 'gg_gg', json, ierr)
  call check(ierr == CALSURR_OK .and. len(json) == 10000, 'a card larger than the first buffer comes whole')
  call check(json(1:19) == '{"process": "gg_gg"' .and. json(10000:10000) == '}', 'card text')
  call check(mock_card_calls() == 2, 'the card took two calls')
  call calsurr_card(client, 'nope', json, ierr)
  call check(ierr == CALSURR_NOT_FOUND .and. len(json) == 0, 'card of a wrong model')

  call calsurr_close(client)
  call check(.not. c_associated(client%handle) .and. mock_closed_count() == 1, 'close')
  call calsurr_close(client)
  call calsurr_close(unconnected)
  call check(mock_closed_count() == 1, 'closing twice or never connected is a no-op')

  if (failures > 0) then
    write (0, '(i0, a)') failures, ' check(s) failed'
    error stop 1
  end if
  write (*, '(a)') 'test_module: all checks passed'

contains

  subroutine check(condition, what)
    logical, intent(in) :: condition
    character(len=*), intent(in) :: what
    if (.not. condition) then
      write (0, '(2a)') 'FAILED: ', what
      failures = failures + 1
    end if
  end subroutine check

  function c_string_value(text) result(value)
    type(c_ptr), intent(in) :: text
    character(len=:), allocatable :: value
    character(kind=c_char), pointer :: chars(:)
    integer :: j, k
    call c_f_pointer(text, chars, [256])
    k = 0
    do while (chars(k + 1) /= char(0))
      k = k + 1
    end do
    allocate (character(len=k) :: value)
    do j = 1, k
      value(j:j) = chars(j)
    end do
  end function c_string_value

end program test_module
